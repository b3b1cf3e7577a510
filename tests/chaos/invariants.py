"""What must hold once the faults stopped and the bus drained, checked against the ledger.

- the database holds every acknowledged change: each signed-up user (once), none of the deleted
  ones, the latest acknowledged allergy state and the merge of every acknowledged preference delta;
- the Agent holds every live user and none of the deleted ones (no lost event), with the latest
  acknowledged allergy state and the merged preferences (not stale), and no user it should not have.

Findings are classified: `lost` (an acknowledged change never reached its target), `stale` (the
target holds an older acknowledged state), `db_missing` (the database lacks an acknowledged change).
"""

from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.chaos.model import EMPTY_ALLERGIES, UserRecord, allergy_state, patch_preferences


@dataclass
class DatabaseView:
    users: dict[str, dict[str, Any]]  # email → {uid, is_verified, count}
    allergies: dict[str, dict[str, Any]] | None  # email → {state, revision}; None: no table yet
    preferences: dict[str, dict[str, Any]] | None  # email → {data, revision}
    outbox: dict[str, dict[str, int]]  # type → status → count
    dead_letters: dict[str, dict[str, int]]  # type → reason (first 80 chars) → count


def _table_rows(conn: psycopg.Connection, sql: str) -> list[tuple] | None:
    try:
        with conn.transaction():
            return conn.execute(sql).fetchall()
    except psycopg.errors.UndefinedTable:
        return None


def read_database(database_url: str) -> DatabaseView:
    url = database_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        users: dict[str, dict[str, Any]] = {}
        for email, uid, verified in conn.execute("SELECT email, uid::text, is_verified FROM identity_user"):
            entry = users.setdefault(email.lower(), {"uid": uid, "is_verified": verified, "count": 0})
            entry["count"] += 1
        allergy_rows = _table_rows(
            conn,
            "SELECT u.email, a.confirmed, a.intolerances, a.severity, a.revision "
            "FROM allergies_allergyprofile a JOIN identity_user u ON u.id = a.user_id",
        )
        allergies = (
            None
            if allergy_rows is None
            else {
                email.lower(): {
                    "state": allergy_state({"confirmed": c, "intolerances": i, "severity": s}),
                    "revision": revision,
                }
                for email, c, i, s, revision in allergy_rows
            }
        )
        preference_rows = _table_rows(
            conn,
            "SELECT u.email, p.data, p.revision FROM identity_userpreferences p "
            "JOIN identity_user u ON u.id = p.user_id",
        )
        preferences = (
            None
            if preference_rows is None
            else {email.lower(): {"data": data, "revision": revision} for email, data, revision in preference_rows}
        )
        outbox: dict[str, dict[str, int]] = {}
        for event_type, status, count in conn.execute(
            "SELECT type, status, count(*) FROM agent_bridge_outboxevent GROUP BY 1, 2"
        ):
            outbox.setdefault(event_type, {})[status] = count
        dead: dict[str, dict[str, int]] = {}
        for event_type, reason, count in (
            _table_rows(conn, "SELECT type, left(reason, 80), count(*) FROM consumers_deadletter GROUP BY 1, 2") or []
        ):
            dead.setdefault(event_type, {})[reason] = count
    return DatabaseView(users, allergies, preferences, outbox, dead)


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    db_missing: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    checked_users: int = 0
    live_users: int = 0
    deleted_users: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stale or self.db_missing or self.other)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lost": self.lost,
            "stale": self.stale,
            "db_missing": self.db_missing,
            "other": self.other,
            "checked_users": self.checked_users,
            "live_users": self.live_users,
            "deleted_users": self.deleted_users,
        }


def _missing_leaves(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Parts of an acknowledged preference merge that are absent from `actual` (lost deltas)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path or "."]
        found: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{path}.{key}")
            else:
                found += _missing_leaves(value, actual[key], f"{path}.{key}")
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [path]
        return [f"{path}[{item!r}]" for item in expected if item not in actual]
    return []


def _prefix_states(user: UserRecord) -> list[dict[str, Any]]:
    states, merged = [{}], {}
    for delta in user.preference_deltas:
        merged = patch_preferences(merged, delta)
        states.append(merged)
    return states


def _shape(value: Any) -> str:
    return "object" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _keys_that_changed_shape(user: UserRecord, expected: dict[str, Any], held: dict[str, Any]) -> list[str]:
    differing = [key for key in expected if held.get(key) != expected[key]]
    return [
        key for key in differing if len({_shape(delta[key]) for delta in user.preference_deltas if key in delta}) > 1
    ]


def check(users: list[UserRecord], db: DatabaseView, agent_users: dict[str, dict[str, Any]]) -> Findings:
    findings = Findings()
    live_uids: set[str] = set()
    deleted_uids: set[str] = set()
    for user in users:
        if not user.signed_up:
            continue  # never acknowledged: nothing was promised
        findings.checked_users += 1
        who = f"{user.email} (uid {user.uid or '?'})"
        row = db.users.get(user.email.lower())
        if user.deleted:
            findings.deleted_users += 1
            deleted_uids.add(user.uid or "")
            if row is not None:
                findings.db_missing.append(f"{who}: account deletion acknowledged, the user is still in the database")
            if user.uid and user.uid in agent_users:
                findings.lost.append(f"{who}: deleted, still at the Agent (user.deleted lost)")
            continue
        findings.live_users += 1
        if row is None:
            findings.db_missing.append(f"{who}: signup acknowledged, no user in the database")
            continue
        if row["count"] != 1:
            findings.other.append(f"{who}: {row['count']} users with this email")
        if user.uid and row["uid"] != user.uid:
            findings.other.append(f"{who}: the database says uid {row['uid']}")
        uid = row["uid"]
        live_uids.add(uid)

        expected_allergies = user.expected_allergies
        expected_preferences = user.expected_preferences
        if db.allergies is not None and user.allergy_history:
            stored = db.allergies.get(user.email.lower())
            if stored is None or stored["state"] != expected_allergies:
                findings.db_missing.append(f"{who}: database allergies {stored} != acknowledged {expected_allergies}")
            elif stored["revision"] < user.allergy_writes:
                findings.db_missing.append(
                    f"{who}: database allergy revision {stored['revision']} < {user.allergy_writes} acknowledged writes"
                )
        if db.preferences is not None and user.preference_deltas:
            stored = db.preferences.get(user.email.lower())
            if stored is None or stored["data"] != expected_preferences:
                findings.db_missing.append(
                    f"{who}: database preferences {stored and stored['data']} != acknowledged merge "
                    f"{expected_preferences}"
                )
        for mismatch in user.merge_mismatches:
            findings.other.append(f"{who}: the API's merge answer differs from the Agent's merge: {mismatch}")

        profile = agent_users.get(uid)
        if profile is None:
            findings.lost.append(f"{who}: live user missing at the Agent (user.registered lost)")
            continue
        held = allergy_state(profile.get("allergies") or {})
        if held != expected_allergies:
            earlier = [allergy_state(s) for s in user.allergy_history[:-1]] + [dict(EMPTY_ALLERGIES)]
            bucket = findings.stale if held in earlier else findings.lost
            findings_text = f"{who}: Agent allergies {held} != latest acknowledged {expected_allergies}"
            bucket.append(findings_text)
        held_preferences = profile.get("preferences") or {}
        if held_preferences != expected_preferences:
            missing = _missing_leaves(expected_preferences, held_preferences)
            text = f"{who}: Agent preferences {held_preferences} != acknowledged preferences {expected_preferences}"
            if missing:
                findings.lost.append(f"{text}; missing {missing}")
            else:
                if held_preferences in _prefix_states(user):
                    hint = " (an older merge)"
                else:
                    changed = _keys_that_changed_shape(user, expected_preferences, held_preferences)
                    hint = (
                        f" (not any earlier merge; {changed} changed shape across the deltas, and merging a later "
                        "full state cannot remove what the old shape left at the Agent)"
                        if changed
                        else " (not any earlier merge)"
                    )
                findings.stale.append(f"{text}{hint}")
    for uid in sorted(set(agent_users) - live_uids - deleted_uids):
        findings.other.append(f"the Agent holds user {uid}, which is not a live user of this run (resurrected?)")
    return findings
