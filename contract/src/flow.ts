// A frontend's journey, typed by the types generated from /api/schema/: signup → verify → login →
// allergies → preferences (set, deselect, remove, replace) → the error shape. `tsc` checks it
// against the schema (a renamed field or a changed type fails the build); `node dist/flow.js`
// runs it against a live dev server and, through the Agent double's control port, checks that
// what the user removed is removed at the Agent too.
//
// Environment: KAIROS_API_URL (http://127.0.0.1:8000), KAIROS_EMAIL_DIR (the file email
// backend's folder: the verification link is read from there), KAIROS_AGENT_CONTROL_URL.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import createClient from "openapi-fetch";

import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type ApiError = Schemas["Error"];
type Preferences = Schemas["PreferencesDocument"];

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`contract flow: ${what}`);
  console.log(`ok  ${what}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) {
      console.log(`ok  ${what}`);
      return value;
    }
    if (Date.now() > deadline) throw new Error(`contract flow: timed out waiting for ${what}`);
    await sleep(200);
  }
}

const api = createClient<paths>({ baseUrl: env("KAIROS_API_URL") });
const emailDir = env("KAIROS_EMAIL_DIR");
const agentControl = env("KAIROS_AGENT_CONTROL_URL");

function verificationToken(email: string): string | undefined {
  for (const name of readdirSync(emailDir).sort().reverse()) {
    const text = readFileSync(join(emailDir, name), "utf8");
    const match = text.includes(email) ? /\/verify\/([^\s/]+)/.exec(text) : null;
    if (match?.[1]) return match[1];
  }
  return undefined;
}

async function agentPreferences(uid: string): Promise<Record<string, unknown> | undefined> {
  const state = (await (await fetch(`${agentControl}/state`)).json()) as {
    users: Record<string, { preferences: Record<string, unknown> }>;
  };
  return state.users[uid]?.preferences;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

async function main(): Promise<void> {
  const email = `flow-${Date.now()}@example.com`;
  const password = "a-long-passphrase-42";

  // Signup, then the link the email holds (the frontend's /verify/<token> page calls the API).
  const signup = await api.POST("/api/signup/", { body: { username: "flow", email, password } });
  check(signup.response.status === 201 && typeof signup.data?.message === "string", "signup answers 201");
  const token = await eventually("the verification email", async () => verificationToken(email));
  const verified = await api.GET("/api/verify/{token}/", { params: { path: { token } } });
  check(verified.response.status === 200, "the verification link verifies");

  // Login: the token, the uid and the user.
  const login = await api.POST("/api/login/", { body: { email, password } });
  if (!login.data) throw new Error(`login failed: ${JSON.stringify(login.error)}`);
  const { uid, auth_id, user } = login.data;
  check(uid === auth_id && user.uid === uid && user.email === email, "login returns uid, auth_id and the user");
  const headers = { Authorization: `Token ${login.data.token}` };

  // The vocabulary, and an allergy profile using it.
  const vocabulary = await api.GET("/api/allergens/");
  const peanuts = vocabulary.data?.allergens.find((a) => a.name === "peanuts");
  check(peanuts !== undefined && peanuts.eu && peanuts.us, "the allergen vocabulary names peanuts (EU and US)");
  const put = await api.PUT("/api/allergies/", {
    headers,
    body: {
      confirmed: ["Peanut"],
      intolerances: ["mango"],
      severity: { peanuts: "anaphylactic", mango: "intolerance" },
    },
  });
  const profile = put.data;
  check(
    profile !== undefined && same(profile.recognised, ["peanuts"]) && same(profile.custom, ["mango"]),
    "the allergy answer says which names are recognised and which custom",
  );
  const syncCode: Schemas["SyncCodeEnum"] = profile.sync.code;
  check(["pending", "synced"].includes(syncCode) && profile.sync.message.length > 0, "sync has a code and a message");

  // Preferences: set, deselect a value, remove a key, replace all.
  const set: Preferences = { dietary: ["vegetarian", "halal"], location_bias: { city: "Oslo", radius_km: 3 } };
  const first = await api.PUT("/api/preferences/", { headers, body: { preferences: set } });
  check(same(first.data?.preferences, set), "PUT preferences stores the document");
  await eventually("the Agent to hold the preferences", async () =>
    same(await agentPreferences(uid), set) ? true : undefined,
  );
  const patched = await api.PATCH("/api/preferences/", {
    headers,
    body: { preferences: { dietary: ["halal"], location_bias: null } },
  });
  check(same(patched.data?.preferences, { dietary: ["halal"] }), "PATCH deselects a value and null removes a key");
  await eventually("the Agent to drop the deselected value and the removed key", async () =>
    same(await agentPreferences(uid), { dietary: ["halal"], location_bias: {} }) ? true : undefined,
  );
  const replaced = await api.PUT("/api/preferences/", { headers, body: { preferences: { vibes: ["quiet"] } } });
  check(same(replaced.data?.preferences, { vibes: ["quiet"] }), "PUT replaces everything");

  // The error shape: one top-level code, per-field codes.
  const refused = await api.PATCH("/api/me/", { headers, body: { username: "x", email: "new@example.com" } as never });
  const error: ApiError | undefined = refused.error;
  check(
    refused.response.status === 400 &&
      error?.code === "validation_error" &&
      error.errors?.["email"]?.[0]?.code === "read_only",
    "PATCH /api/me/ {email} names the read-only field",
  );
  const bearer = await api.GET("/api/me/", { headers: { Authorization: `Bearer ${login.data.token}` } });
  check(bearer.response.status === 401 && bearer.error?.code === "wrong_auth_scheme", "Bearer gets a clear 401");
  const noSlash = await fetch(`${env("KAIROS_API_URL")}/api/login`, { method: "POST", redirect: "manual" });
  check(
    noSlash.status === 308 && noSlash.headers.get("location") === "/api/login/" &&
      ((await noSlash.json()) as ApiError).code === "trailing_slash_required",
    "a missing slash is a JSON 308",
  );
  const deleted = await api.DELETE("/api/account/", { headers, body: { password } });
  check(deleted.response.status === 204, "DELETE /api/account/ with the password deletes the account");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
