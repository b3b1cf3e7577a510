"""The seeded stream of user actions, run by a few client threads, each owning its own users.

A request whose outcome is unknown (connection refused or reset because the API was killed, a
timeout, a 5xx) is retried until it gets a definite answer, like a real client would; every
action is idempotent in its effect (a re-sent allergy replace or preference delta yields the same
state), so the acknowledged state stays exact. Only 2xx answers update the ledger.
"""

import email
import email.policy
import random
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.chaos.model import Ledger, UserRecord, allergy_state, merge_preferences

PASSWORD = "chaos-passphrase-8431-long"
OK = (200, 201, 202, 204)

# (canonical name, spellings the API must normalise to it)
ALLERGENS: list[tuple[str, tuple[str, ...]]] = [
    ("peanuts", ("peanuts", "Peanut", "groundnuts")),
    ("tree nuts", ("tree nuts", " Tree  Nuts")),
    ("milk", ("milk", "Milk")),
    ("eggs", ("eggs",)),
    ("fish", ("fish",)),
    ("crustaceans", ("crustaceans", "Shrimp", "shellfish")),
    ("molluscs", ("molluscs",)),
    ("soybeans", ("soybeans", "soy")),
    ("wheat", ("wheat",)),
    ("gluten", ("gluten",)),
    ("sesame", ("sesame", "Sesame seeds")),
    ("celery", ("celery",)),
    ("mustard", ("mustard",)),
    ("lupin", ("lupin",)),
    ("sulphites", ("sulphites",)),
    ("walnuts", ("walnuts",)),
    ("kiwi fruit", ("kiwi fruit", "Kiwi Fruit")),
]
LEVELS = ("anaphylactic", "severe", "moderate", "intolerance")

DIETARY = ["vegetarian", "vegan", "halal", "kosher", "pescatarian", "low-carb", "gluten-free"]
VIBES = ["cozy", "lively", "romantic", "quiet", "family", "trendy", "outdoor"]
CUISINES = ["italian", "thai", "mexican", "japanese", "indian", "french", "ethiopian", "korean"]
PRICE_TIERS = ["$", "$$", "$$$", "$$$$"]
NEIGHBOURHOODS = ["downtown", "old town", "harbour", "university", "riverside"]


class Unresolved(Exception):
    """A request got no definite answer before its deadline."""


class EmailBox:
    """Reads the verification links that the consumer wrote with Django's file email backend."""

    SEPARATOR = b"\n" + b"-" * 79 + b"\n"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.tokens: dict[str, str] = {}  # address → newest verification token
        self._done: set[str] = set()

    def refresh(self) -> None:
        if not self.lock.acquire(blocking=False):
            return  # another thread is reading the folder
        try:
            if not self.folder.is_dir():
                return
            for path in sorted(self.folder.iterdir()):
                if path.name in self._done:
                    continue
                raw = path.read_bytes()
                if not raw.endswith(self.SEPARATOR):
                    continue  # still being written
                for chunk in raw.split(self.SEPARATOR):
                    if chunk.strip():
                        self._read_message(chunk)
                self._done.add(path.name)
        finally:
            self.lock.release()

    def _read_message(self, chunk: bytes) -> None:
        message = email.message_from_bytes(chunk, policy=email.policy.default)
        to = str(message.get("To", "")).strip().lower()
        for part in message.walk():
            if part.get_content_maintype() != "text":
                continue
            for url in re.findall(r"https?://[^\s\"'<>]+", part.get_content()):
                token = _verify_token(url)
                if token:
                    self.tokens[to] = token

    def token_for(self, address: str) -> str | None:
        return self.tokens.get(address.lower())


def _verify_token(url: str) -> str | None:
    parts = urlsplit(url)
    if "verif" not in parts.path.lower():
        return None
    query = parse_qs(parts.query)
    if query.get("token"):
        return query["token"][0]
    segments = [s for s in parts.path.split("/") if s]
    return segments[-1] if segments and "verif" not in segments[-1].lower() else None


class ClientWorker(threading.Thread):
    """One client: signs users up, verifies and logs them in, and changes their profiles."""

    def __init__(
        self,
        *,
        index: int,
        seed: int,
        api_url: str,
        ledger: Ledger,
        emails: EmailBox,
        stop: threading.Event,
        capabilities: set[str],
        verify_in_db,
        max_users: int,
        verify_grace_seconds: float,
    ) -> None:
        super().__init__(name=f"chaos-client-{index}", daemon=True)
        self.index = index
        self.rng = random.Random(seed)
        self.api_url = api_url
        self.ledger = ledger
        self.emails = emails
        self.stop_event = stop
        self.capabilities = capabilities
        self.verify_in_db = verify_in_db
        self.max_users = max_users
        self.verify_grace_seconds = verify_grace_seconds
        self.session = requests.Session()
        self.users: list[UserRecord] = []
        self.serial = 0
        self.uncertain = False
        self.tried_tokens: dict[str, str] = {}
        self.failure: BaseException | None = None

    # --- the loop -------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                time.sleep(self.rng.uniform(0, 0.03))
        except BaseException as exc:  # reported by the runner
            self.failure = exc

    def step(self) -> None:
        self.finish_verifications()
        active = [u for u in self.users if u.active]
        live = [u for u in self.users if u.signed_up and not u.deleted]
        if len(live) < self.max_users and (len(active) < 3 or self.rng.random() < 0.12):
            self.signup()
            return
        if not active:
            time.sleep(0.1)
            return
        user = self.rng.choice(active)
        choices = [("allergies_replace", 40), ("preferences_merge", 40), ("allergies_clear", 5), ("account_delete", 1)]
        choices = [(name, weight) for name, weight in choices if name in self.capabilities]
        if not choices:
            time.sleep(0.1)
            return
        action = self.rng.choices([c[0] for c in choices], weights=[c[1] for c in choices])[0]
        getattr(self, action)(user)

    # --- HTTP with retries on unknown outcomes --------------------------------
    def call(
        self,
        action: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        deadline_seconds: float = 180,
    ) -> requests.Response:
        deadline = time.monotonic() + deadline_seconds
        delay = 0.1
        self.uncertain = False  # did an attempt end with an unknown outcome?
        while True:
            self.ledger.count("attempts", action)
            headers = {"Authorization": f"Token {token}"} if token else {}
            try:
                response = self.session.request(
                    method, f"{self.api_url}{path}", json=json, headers=headers, timeout=(3, 20)
                )
            except requests.RequestException as exc:
                self.uncertain = True
                self.ledger.count("indeterminate", action)
                last = repr(exc)
            else:
                if response.status_code < 500:
                    return response
                self.uncertain = True
                self.ledger.count("indeterminate", action)
                self.ledger.note(
                    "server_errors",
                    {
                        "action": action,
                        "method": method,
                        "path": path,
                        "status": response.status_code,
                        "body": response.text[:300],
                    },
                )
                last = f"{response.status_code} {response.text[:200]}"
            if time.monotonic() > deadline:
                raise Unresolved(f"{action} {method} {path}: no definite answer in {deadline_seconds}s ({last})")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _rejected(self, action: str, user: UserRecord, response: requests.Response) -> None:
        self.ledger.note(
            "rejected",
            {"action": action, "email": user.email, "status": response.status_code, "body": response.text[:300]},
        )

    # --- actions ----------------------------------------------------------------
    def signup(self) -> None:
        self.serial += 1
        user = UserRecord(
            email=f"c{self.index}u{self.serial}-{self.rng.randrange(10**6)}@chaos.example.com",
            username=f"chaos{self.index}x{self.serial}",
            password=PASSWORD,
        )
        self.users.append(user)
        self.ledger.add_user(user)
        body = {"username": user.username, "email": user.email, "password": user.password}
        response = self.call("signup", "POST", "/api/signup/", json=body)
        if response.status_code in OK:
            user.signed_up = True
            user.signed_up_at = time.monotonic()
            self.ledger.count("acknowledged", "signup")
        else:
            self._rejected("signup", user, response)

    def finish_verifications(self) -> None:
        waiting = [u for u in self.users if u.signed_up and not u.deleted and u.token is None]
        if not waiting:
            return
        self.emails.refresh()
        for user in waiting:
            if not user.verified_by:
                token = self.emails.token_for(user.email)
                if token and self.tried_tokens.get(user.email) != token:
                    self.tried_tokens[user.email] = token
                    response = self.call("verify", "GET", f"/api/verify/{token}/")
                    if response.status_code in OK:
                        user.verified_by = "email"
                        self.ledger.count("acknowledged", "verify")
                    elif self.uncertain:
                        user.verified_by = "email"  # the lost attempt may have used the token; login tells
                    else:
                        self._rejected("verify", user, response)
                elif time.monotonic() - user.signed_up_at > self.verify_grace_seconds:
                    # The email is late (its events are queued behind the faults): mark the address
                    # verified in the database so this user can still take part.
                    self.verify_in_db(user.email)
                    user.verified_by = "db"
            if user.verified_by and "login" in self.capabilities:
                self.login(user)

    def login(self, user: UserRecord) -> None:
        response = self.call("login", "POST", "/api/login/", json={"email": user.email, "password": user.password})
        if response.status_code == 200:
            payload = response.json()
            user.token, user.uid = payload["token"], payload["auth_id"]
            self.ledger.count("acknowledged", "login")
        elif response.status_code == 403:
            user.verified_by = ""  # not verified after all: wait for the email (or the fallback) again
        else:
            self._rejected("login", user, response)

    def _allergy_body(self) -> dict[str, Any]:
        picked = self.rng.sample(ALLERGENS, self.rng.randint(0, 5))
        split = self.rng.randint(0, len(picked))
        body: dict[str, Any] = {"confirmed": [], "intolerances": [], "severity": {}}
        for position, (_, spellings) in enumerate(picked):
            spelling = self.rng.choice(spellings)
            body["confirmed" if position < split else "intolerances"].append(spelling)
            body["severity"][spelling] = self.rng.choice(LEVELS[:3] if position < split else LEVELS)
        return body

    def allergies_replace(self, user: UserRecord) -> None:
        body = self._allergy_body()
        response = self.call("allergies_replace", "PUT", "/api/allergies/", token=user.token, json=body)
        self._record_allergies("allergies_replace", user, response)

    def allergies_clear(self, user: UserRecord) -> None:
        response = self.call("allergies_clear", "DELETE", "/api/allergies/", token=user.token)
        self._record_allergies("allergies_clear", user, response)

    def _record_allergies(self, action: str, user: UserRecord, response: requests.Response) -> None:
        if response.status_code in OK:
            user.allergy_history.append(allergy_state(response.json()))
            user.allergy_writes += 1
            self.ledger.count("acknowledged", action)
        else:
            self._rejected(action, user, response)

    def _preference_delta(self) -> dict[str, Any]:
        rng = self.rng
        makers = {
            "dietary": lambda: rng.sample(DIETARY, rng.randint(1, 2)),
            "vibes": lambda: rng.sample(VIBES, rng.randint(1, 3)),
            "cuisine_affinity": lambda: {c: round(rng.uniform(-1, 1), 2) for c in rng.sample(CUISINES, 2)},
            "price_comfort": lambda: rng.sample(PRICE_TIERS, rng.randint(1, 2)),
            "location_bias": lambda: {"city": rng.choice(NEIGHBOURHOODS), "radius_km": rng.randint(1, 9)},
        }
        keys = rng.sample(sorted(makers), rng.randint(1, 3))
        return {key: makers[key]() for key in keys}

    def preferences_merge(self, user: UserRecord) -> None:
        delta = self._preference_delta()
        response = self.call(
            "preferences_merge", "PATCH", "/api/preferences/", token=user.token, json={"preferences": delta}
        )
        if response.status_code in OK:
            user.preference_deltas.append(delta)
            self.ledger.count("acknowledged", "preferences_merge")
            answered = response.json().get("preferences")
            expected = user.expected_preferences
            if answered is not None and answered != expected:
                # The backend's answer disagrees with the documented PATCH semantics.
                user.merge_mismatches.append({"delta": delta, "answered": answered, "expected": expected})
        else:
            self._rejected("preferences_merge", user, response)

    def account_delete(self, user: UserRecord) -> None:
        response = self.call(
            "account_delete", "DELETE", "/api/account/", token=user.token, json={"password": user.password}
        )
        # A 401 after an attempt with an unknown outcome: that attempt deleted the user and their
        # tokens with it (the database check at the end confirms it).
        if response.status_code in OK or (self.uncertain and response.status_code == 401):
            user.deleted = True
            self.ledger.count("acknowledged", "account_delete")
        else:
            self._rejected("account_delete", user, response)


__all__ = ["ClientWorker", "EmailBox", "Unresolved", "merge_preferences"]
