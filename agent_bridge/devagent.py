"""A local stand-in for the Kairos Agent: a development and test tool only.

NEVER use this in production. It keeps everything in memory, has no
persistence, no TLS and no rate limiting; it exists so that the backend can be
developed, demonstrated and fault-tested without the real Agent (a FastAPI
service that lives in another repository).

It implements the Agent's user-management contract (seed 000 §3, §9, §10 and
the Agent's own integration report) as the backend uses it:

    POST   /users/{uid}                 idempotent create: 201 created / 200 existed
    GET    /users/{uid}                 full profile
    PATCH  /users/{uid}                 {"preferences": {...}} deep-merged
    PATCH  /users/{uid}/allergies       full replace, allergy_flags rebuilt
    DELETE /users/{uid}                 user + interactions, 204
    GET    /users/{uid}/interactions    ?limit=1..100&offset&include_response
    DELETE /users/{uid}/interactions    204
    GET    /health                      no token needed, like the real Agent

Every /users request needs ``X-Service-Token``; errors are always
``{"detail": ..., "code": ...}`` (the code is also sent as ``X-Error-Code``,
the header the real Agent uses for its 404s).

A second, *control* server on its own port lets tests and demos inspect the
state, read the request log, inject latency and error statuses, and take the
main port down (connections refused) and up again. It is on a separate port so
it stays reachable while the main port is down.

It is pure standard library and imports no Django, so it starts in a few
milliseconds as its own process::

    python -m agent_bridge.devagent --port 4021 --control-port 4022 \
        --token "$AGENT_SERVICE_TOKEN"

or in-process from tests with :class:`DevAgentServer`, and is driven from
tests with :class:`DevAgentControl`.
"""

from __future__ import annotations

import argparse
import collections
import copy
import hmac
import json
import logging
import os
import re
import signal
import socketserver
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from identity.preferences import preferences_deep_merge

logger = logging.getLogger(__name__)

#: The line printed by the CLI once both ports listen; e2e tests parse it to
#: learn the ports when they start the double with ``--port 0``.
LISTENING_LINE_RE = re.compile(
    r"devagent listening on (?P<base_url>http://\S+) \(control (?P<control_url>http://\S+)\)"
)

SEVERITY_LEVELS = frozenset({"anaphylactic", "severe", "moderate", "intolerance"})
MAX_LIMIT = 100
REQUEST_LOG_SIZE = 10_000

# The code a fault answers with when it names a status but no code, so that a
# fault looks like what the real Agent (or its proxy) would send.
_DEFAULT_CODES = {
    400: "MISSING_USER_ID",
    401: "INVALID_SERVICE_TOKEN",
    404: "USER_NOT_FOUND",
    422: "INVALID_PAYLOAD",
    429: "RATE_LIMITED",
}

_INTERACTION_FIELDS = {
    "id",
    "user_query",
    "agent_response",
    "ui_type",
    "restaurant_ids",
    "allergy_warnings_shown",
    "allergens_flagged",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class HttpError(Exception):
    """An error answer; raised anywhere in a handler, turned into JSON once."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _invalid(detail: str) -> HttpError:
    return HttpError(422, "INVALID_PAYLOAD", detail)


def _user_not_found() -> HttpError:
    return HttpError(404, "USER_NOT_FOUND", "User not found")


def _canonical_uid(raw: str) -> str:
    """The Agent declares ``uid: UUID`` in its paths, so anything else is a 422."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _invalid(f"uid must be a UUID, got {raw!r}") from None


def _require_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid(f"{what} must be a JSON object")
    return body


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{key} must be a list of strings")
    return list(value)


def _str_dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise _invalid(f"{key} must be an object")
    return dict(value)


def allergy_flags_for(confirmed: list[str], intolerances: list[str]) -> list[str]:
    """The sorted union of confirmed allergens and intolerances (DESIGN §6)."""
    return sorted(set(confirmed) | set(intolerances))


# The real Agent's merge rule, shared with the backend's own preference merge.
deep_merge = preferences_deep_merge


def _parse_bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise _invalid(f"{name} must be a boolean")


def _parse_int(raw: str, name: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"{name} must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise _invalid(f"{name} must be {bounds}")
    return value


class Fault:
    """What the main port should do wrong, set through ``POST /fault``.

    ``fail_count`` bounds the whole fault (latency and status alike): after
    that many affected requests the double is healthy again.
    """

    _KEYS: ClassVar[set[str]] = {"latency_ms", "status", "code", "fail_count", "paths"}

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self._KEYS
        if unknown:
            raise _invalid(f"unknown fault keys: {sorted(unknown)}")
        latency = spec.get("latency_ms") or 0
        status = spec.get("status")
        code = spec.get("code")
        fail_count = spec.get("fail_count")
        paths = spec.get("paths")
        if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
            raise _invalid("latency_ms must be an integer >= 0")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599):
            raise _invalid("status must be an HTTP error status (400-599), or null")
        if code is not None and not isinstance(code, str):
            raise _invalid("code must be a string or null")
        if fail_count is not None and (
            not isinstance(fail_count, int) or isinstance(fail_count, bool) or fail_count < 1
        ):
            raise _invalid("fail_count must be an integer >= 1, or null")
        if paths is not None:
            if not isinstance(paths, str):
                raise _invalid("paths must be a regular expression string")
            try:
                self.pattern: re.Pattern[str] | None = re.compile(paths)
            except re.error as exc:
                raise _invalid(f"paths is not a valid regular expression: {exc}") from None
        else:
            self.pattern = None
        self.latency_ms: int = latency
        self.status: int | None = status
        if status is not None and code is None:
            code = "AGENT_UNAVAILABLE" if status >= 500 else _DEFAULT_CODES.get(status, "FAULT")
        self.code: str | None = code
        self.remaining: int | None = fail_count
        self.paths: str | None = paths

    def matches(self, path: str) -> bool:
        return self.pattern is None or self.pattern.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "status": self.status,
            "code": self.code,
            "remaining": self.remaining,
            "paths": self.paths,
        }


class AgentState:
    """Users, interactions, the request log and the current fault, behind one lock.

    Handlers run on many threads (ThreadingHTTPServer), so every read and
    write goes through the lock and returns deep copies.
    """

    def __init__(self, token: str = "") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, Any]] = {}
        self._interactions: dict[str, list[dict[str, Any]]] = {}
        self._next_interaction_id = 1
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._fault: Fault | None = None

    # --- authentication --------------------------------------------------

    def token_ok(self, presented: str | None) -> bool:
        """The header must be present; its value must match if a token is configured."""
        if presented is None:
            return False
        if not self.token:
            return True
        return hmac.compare_digest(presented.encode(), self.token.encode())

    # --- faults and the request log ---------------------------------------

    def set_fault(self, spec: dict[str, Any]) -> Fault | None:
        fault = Fault(spec) if spec else None
        with self._lock:
            self._fault = fault
        return fault

    def current_fault(self) -> dict[str, Any] | None:
        with self._lock:
            return self._fault.as_dict() if self._fault else None

    def take_fault(self, path: str) -> Fault | None:
        """The fault to apply to this request, counting it against ``fail_count``."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(path):
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def log_request(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._log))

    def reset(self) -> None:
        with self._lock:
            self._users.clear()
            self._interactions.clear()
            self._log.clear()
            self._fault = None
            self._next_interaction_id = 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            users = {}
            for uid, profile in self._users.items():
                full = copy.deepcopy(profile)
                full["interactions"] = copy.deepcopy(self._sorted_interactions(uid))
                users[uid] = full
            return {"users": users}

    # --- the Agent contract -------------------------------------------------

    def create_user(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        body = _require_object(body, "body")
        preferences = _str_dict(body, "preferences")
        allergies_in = _str_dict(body, "allergies")
        dietary_flags = _str_list(body, "dietary_flags")
        vibe_tags = _str_list(body, "vibe_tags")
        allergy_flags = _str_list(body, "allergy_flags")
        price_tiers = _str_list(body, "preferred_price_tiers")
        allergies = (
            self._allergies(allergies_in)
            if allergies_in
            else {
                "confirmed": [],
                "intolerances": [],
                "severity": {},
            }
        )
        if not allergy_flags:
            allergy_flags = allergy_flags_for(allergies["confirmed"], allergies["intolerances"])
        with self._lock:
            if uid in self._users:
                return 200, {"uid": uid, "created": False}
            now = _now_iso()
            self._users[uid] = {
                "uid": uid,
                "preferences": preferences,
                "allergies": allergies,
                "allergy_flags": allergy_flags,
                "dietary_flags": dietary_flags,
                "vibe_tags": vibe_tags,
                "preferred_price_tiers": price_tiers,
                "interaction_count": 0,
                "last_active_at": None,
                "created_at": now,
                "updated_at": now,
            }
            self._interactions[uid] = []
            return 201, {"uid": uid, "created": True}

    def get_user(self, uid: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return 200, copy.deepcopy(self._existing(uid))

    def update_preferences(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        body = _require_object(body, "body")
        if "preferences" not in body:
            raise _invalid("preferences is required")
        preferences = _str_dict(body, "preferences")
        with self._lock:
            user = self._existing(uid)
            user["preferences"] = deep_merge(user["preferences"], preferences)
            user["updated_at"] = _now_iso()
            return 200, {"uid": uid, "updated": True}

    def replace_allergies(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        allergies = self._allergies(_require_object(body, "body"))
        flags = allergy_flags_for(allergies["confirmed"], allergies["intolerances"])
        with self._lock:
            user = self._existing(uid)
            user["allergies"] = allergies
            user["allergy_flags"] = flags
            user["updated_at"] = _now_iso()
            return 200, {"uid": uid, "allergy_flags": flags, "updated": True}

    def delete_user(self, uid: str) -> tuple[int, None]:
        with self._lock:
            self._existing(uid)
            del self._users[uid]
            self._interactions.pop(uid, None)
            return 204, None

    def list_interactions(self, uid: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        limit = _parse_int(query.get("limit", ["20"])[-1], "limit", minimum=1, maximum=MAX_LIMIT)
        offset = _parse_int(query.get("offset", ["0"])[-1], "offset", minimum=0)
        include_response = _parse_bool(query.get("include_response", ["false"])[-1], "include_response")
        with self._lock:
            self._existing(uid)
            items = self._sorted_interactions(uid)
            page = copy.deepcopy(items[offset : offset + limit])
        if not include_response:
            for item in page:
                item["agent_response"] = {}
        return 200, {
            "interactions": page,
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    def clear_interactions(self, uid: str) -> tuple[int, None]:
        with self._lock:
            self._existing(uid)
            self._interactions[uid] = []
            return 204, None

    def add_interaction(self, uid: str, body: Any) -> dict[str, Any]:
        """Seed one history item (control port).

        Fields are those of the Agent's ``InteractionSummary`` (seed 000 §9);
        unknown ones are refused so that a typo in a test fails loudly.
        """
        body = _require_object(body, "body")
        unknown = set(body) - _INTERACTION_FIELDS
        if unknown:
            raise _invalid(f"unknown interaction fields: {sorted(unknown)}")
        created_at = body.get("created_at") or _now_iso()
        try:
            datetime.fromisoformat(str(created_at))
        except ValueError:
            raise _invalid("created_at must be an ISO 8601 timestamp") from None
        with self._lock:
            user = self._existing(uid)
            item_id = body.get("id")
            if item_id is None:
                item_id = self._next_interaction_id
            elif not isinstance(item_id, int) or isinstance(item_id, bool):
                raise _invalid("id must be an integer")
            self._next_interaction_id = max(self._next_interaction_id, item_id) + 1
            item = {
                "id": item_id,
                "uid": uid,
                "user_query": body.get("user_query", ""),
                "agent_response": body.get("agent_response", {}),
                "ui_type": body.get("ui_type"),
                "restaurant_ids": body.get("restaurant_ids", []),
                "allergy_warnings_shown": bool(body.get("allergy_warnings_shown", False)),
                "allergens_flagged": body.get("allergens_flagged", []),
                "prompt_tokens": body.get("prompt_tokens"),
                "completion_tokens": body.get("completion_tokens"),
                "created_at": created_at,
            }
            self._interactions[uid].append(item)
            user["interaction_count"] += 1
            user["last_active_at"] = created_at
            return copy.deepcopy(item)

    # --- helpers (call with the lock held) --------------------------------

    def _existing(self, uid: str) -> dict[str, Any]:
        user = self._users.get(uid)
        if user is None:
            raise _user_not_found()
        return user

    def _sorted_interactions(self, uid: str) -> list[dict[str, Any]]:
        def key(item: dict[str, Any]) -> tuple[datetime, int]:
            stamp = datetime.fromisoformat(str(item["created_at"]))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            return stamp, int(item["id"])

        # Newest first, as the Agent orders by created_at DESC.
        return sorted(self._interactions.get(uid, []), key=key, reverse=True)

    @staticmethod
    def _allergies(body: dict[str, Any]) -> dict[str, Any]:
        confirmed = _str_list(body, "confirmed")
        intolerances = _str_list(body, "intolerances")
        severity = _str_dict(body, "severity")
        for allergen, level in severity.items():
            if level not in SEVERITY_LEVELS:
                raise _invalid(f"severity[{allergen!r}] must be one of {sorted(SEVERITY_LEVELS)}, got {level!r}")
        return {
            "confirmed": confirmed,
            "intolerances": intolerances,
            "severity": severity,
        }


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that binds without a reverse DNS lookup."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, agent: DevAgentServer) -> None:
        self.agent = agent
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can take
        # seconds on hosts with slow DNS; the double must start instantly.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _JsonHandler(BaseHTTPRequestHandler):
    """Shared plumbing: read a JSON body, answer JSON, stay quiet on stderr."""

    server: _Server
    server_version = "devagent/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        if not raw.strip():
            raise _invalid("a JSON body is required")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _invalid("body is not valid JSON") from None

    def _send(self, status: int, payload: Any, *, error_code: str | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during injected latency).
            logger.debug("client went away before %s %s was answered", self.command, self.path)

    @staticmethod
    def _error_payload(error: HttpError) -> dict[str, Any]:
        return {"detail": error.detail, "code": error.code}

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        raise NotImplementedError


_USER_PATH = re.compile(r"^/users/(?P<uid>[^/]+)(?P<rest>/allergies|/interactions)?/?$")


class _AgentHandler(_JsonHandler):
    """The main port: the Agent's contract, behind the fault injector."""

    def _dispatch(self) -> None:
        state = self.server.agent.state
        started = time.time()
        split = urlsplit(self.path)
        path = split.path
        raw = self._read_body()
        presented = self.headers.get("X-Service-Token")
        error_code = None
        try:
            fault = state.take_fault(path)
            if fault is not None:
                if fault.latency_ms:
                    time.sleep(fault.latency_ms / 1000)
                if fault.status is not None:
                    raise HttpError(fault.status, fault.code or "FAULT", "injected fault (devagent)")
            status, payload = self._route(state, path, split.query, raw, presented)
        except HttpError as error:
            status, payload, error_code = (
                error.status,
                self._error_payload(error),
                error.code,
            )
        except Exception:  # a bug in the double must still answer like the Agent does
            logger.exception("devagent failed on %s %s", self.command, path)
            error = HttpError(500, "AGENT_UNAVAILABLE", "Internal server error")
            status, payload, error_code = 500, self._error_payload(error), error.code
        # Log before answering, so a test that has its answer also sees the entry.
        state.log_request(
            {
                "method": self.command,
                "path": path,
                "query": split.query,
                "token_present": presented is not None,
                "token_valid": state.token_ok(presented),
                "traceparent": self.headers.get("traceparent"),
                "body": _loggable_body(raw),
                "timestamp": started,
                "status": status,
            }
        )
        self._send(status, payload, error_code=error_code)

    def _route(
        self,
        state: AgentState,
        path: str,
        query: str,
        raw: bytes,
        presented: str | None,
    ) -> tuple[int, Any]:
        method = self.command
        if path == "/health" and method == "GET":
            return 200, {"status": "ok", "version": "devagent"}
        match = _USER_PATH.match(path)
        if match is None:
            raise HttpError(404, "NOT_FOUND", "Not Found")
        if not state.token_ok(presented):
            raise HttpError(401, "INVALID_SERVICE_TOKEN", "Invalid service token")
        uid = _canonical_uid(match["uid"])
        rest = match["rest"]
        if rest is None:
            if method == "POST":
                return state.create_user(uid, self._parse_json(raw))
            if method == "GET":
                return state.get_user(uid)
            if method == "PATCH":
                return state.update_preferences(uid, self._parse_json(raw))
            if method == "DELETE":
                return state.delete_user(uid)
        elif rest == "/allergies":
            if method == "PATCH":
                return state.replace_allergies(uid, self._parse_json(raw))
        elif rest == "/interactions":
            if method == "GET":
                return state.list_interactions(uid, parse_qs(query, keep_blank_values=True))
            if method == "DELETE":
                return state.clear_interactions(uid)
        raise HttpError(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")


def _loggable_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


_INTERACTION_PATH = re.compile(r"^/interactions/(?P<uid>[^/]+)/?$")


class _ControlHandler(_JsonHandler):
    """The control port: inspect and steer the double. Never faulted, never down."""

    def _dispatch(self) -> None:
        agent = self.server.agent
        path = urlsplit(self.path).path.rstrip("/") or "/"
        raw = self._read_body()
        try:
            status, payload = self._route(agent, path, raw)
        except HttpError as error:
            self._send(error.status, self._error_payload(error), error_code=error.code)
            return
        except Exception:
            logger.exception("devagent control failed on %s %s", self.command, path)
            error = HttpError(500, "CONTROL_ERROR", "control endpoint failed")
            self._send(500, self._error_payload(error), error_code=error.code)
            return
        self._send(status, payload)

    def _body(self, raw: bytes) -> Any:
        return self._parse_json(raw) if raw.strip() else {}

    def _route(self, agent: DevAgentServer, path: str, raw: bytes) -> tuple[int, Any]:
        method = self.command
        state = agent.state
        if method == "GET" and path == "/health":
            return 200, {"status": "ok", "main_up": agent.main_up}
        if method == "GET" and path == "/state":
            return 200, state.snapshot()
        if method == "GET" and path == "/requests":
            return 200, {"requests": state.request_log()}
        if method == "POST" and path == "/reset":
            state.reset()
            agent.up()
            return 200, {"reset": True}
        if path == "/fault":
            if method == "GET":
                return 200, {"fault": state.current_fault()}
            if method == "POST":
                state.set_fault(_require_object(self._body(raw), "body"))
                return 200, {"fault": state.current_fault()}
        if method == "POST" and path == "/down":
            agent.down()
            return 200, {"main_up": False}
        if method == "POST" and path == "/up":
            agent.up()
            return 200, {"main_up": True}
        match = _INTERACTION_PATH.match(path)
        if match and method == "POST":
            uid = _canonical_uid(match["uid"])
            return 201, state.add_interaction(uid, self._parse_json(raw))
        raise HttpError(404, "NOT_FOUND", f"no control endpoint {method} {path}")


class DevAgentServer:
    """Runs the double (main + control ports) on background threads.

    Port 0 picks a free port; the chosen ones are in :attr:`port` and
    :attr:`control_port` after :meth:`start`. The main port keeps its number
    across :meth:`down`/:meth:`up`, so clients need not be reconfigured.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        token: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.control_port = control_port
        self.state = AgentState(token)
        self._main: _Server | None = None
        self._main_thread: threading.Thread | None = None
        self._control: _Server | None = None
        self._control_thread: threading.Thread | None = None
        self._switch = threading.Lock()  # serialises down/up/stop

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    @property
    def main_up(self) -> bool:
        return self._main is not None

    def start(self) -> DevAgentServer:
        self._control = _Server((self.host, self.control_port), _ControlHandler, self)
        self.control_port = self._control.server_address[1]
        self._control_thread = _serve(self._control, "devagent-control")
        self.up()
        return self

    def up(self) -> None:
        """Open the main port (again); a no-op when it is already open."""
        with self._switch:
            if self._main is not None:
                return
            self._main = _Server((self.host, self.port), _AgentHandler, self)
            self.port = self._main.server_address[1]
            self._main_thread = _serve(self._main, "devagent-main")

    def down(self) -> None:
        """Close the listening socket so that new connections are refused."""
        # Held throughout, so a concurrent up() cannot bind before the close.
        with self._switch:
            server, thread = self._main, self._main_thread
            self._main = self._main_thread = None
            if server is not None:
                server.shutdown()
                server.server_close()
            if thread is not None:
                thread.join(timeout=5)

    def stop(self) -> None:
        self.down()
        control, thread = self._control, self._control_thread
        self._control = self._control_thread = None
        if control is not None:
            control.shutdown()
            control.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve(server: _Server, name: str) -> threading.Thread:
    # A short poll interval makes down()/stop() return in ~50 ms.
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


class DevAgentControl:
    """A small client for the control port, for tests that run the double elsewhere."""

    def __init__(self, control_url: str, *, timeout: float = 5.0) -> None:
        import requests  # only the test helper needs it; the server stays stdlib-only

        self.control_url = control_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self._session.request(method, f"{self.control_url}{path}", json=payload, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def state(self) -> dict[str, Any]:
        """``{"users": {uid: profile + "interactions"}}``."""
        return self._call("GET", "/state")

    def user(self, uid: str) -> dict[str, Any] | None:
        """One user's profile (with interactions), or None if the double lacks it."""
        return self.state()["users"].get(str(uuid.UUID(str(uid))))

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/requests")["requests"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def fault(
        self,
        *,
        latency_ms: int = 0,
        status: int | None = None,
        code: str | None = None,
        fail_count: int | None = None,
        paths: str | None = None,
    ) -> dict[str, Any] | None:
        spec = {
            "latency_ms": latency_ms,
            "status": status,
            "code": code,
            "fail_count": fail_count,
            "paths": paths,
        }
        return self._call("POST", "/fault", spec)["fault"]

    def clear_faults(self) -> None:
        self._call("POST", "/fault", {})

    def down(self) -> None:
        self._call("POST", "/down")

    def up(self) -> None:
        self._call("POST", "/up")

    def add_interaction(self, uid: str, item: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/interactions/{uid}", item)

    def wait_until_healthy(self, timeout: float = 10.0) -> None:
        """Poll the control port until it answers (for a freshly spawned process)."""
        import requests

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent_bridge.devagent",
        description="In-memory stand-in for the Kairos Agent (development/tests only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4021, help="main port; 0 picks a free one")
    parser.add_argument(
        "--control-port",
        type=int,
        default=4022,
        help="control port; 0 picks a free one",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("AGENT_SERVICE_TOKEN", ""),
        help="expected X-Service-Token (default: $AGENT_SERVICE_TOKEN; empty accepts any value)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s devagent %(levelname)s %(message)s",
    )

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = DevAgentServer(args.host, args.port, args.control_port, args.token)
    server.start()
    print(
        f"devagent listening on {server.base_url} (control {server.control_url})",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
