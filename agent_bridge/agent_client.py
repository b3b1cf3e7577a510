"""The HTTP client for the Kairos Agent: the only code that talks to it.

Each method is one Agent endpoint (seed 000 §3, §9). The client makes exactly
one attempt per call: the retry policy (immediate backoff, delayed retries,
dead letters) belongs to the consumer, which needs to know *why* a call failed
to choose. So every failure is raised as a typed :class:`AgentError` whose
``transient`` flag says whether trying again later can help (DESIGN §5):

    AgentError
    ├── AgentTransientError        5xx, 429, AGENT_UNAVAILABLE, no usable answer
    │   ├── AgentUnavailable       the Agent answered "not now"
    │   ├── AgentTimeout           no answer in time
    │   └── AgentConnectionError   could not connect, or the connection broke
    └── AgentPermanentError        other 4xx: retrying cannot help
        ├── AgentUserNotFound      404 USER_NOT_FOUND: create the user, then retry
        ├── AgentAuthError         401 INVALID_SERVICE_TOKEN: configuration alert
        ├── AgentInvalidPayload    422 INVALID_PAYLOAD
        └── AgentMissingUserId     400 MISSING_USER_ID

The service token is a secret: it travels only in the ``X-Service-Token``
header, is never logged, and is scrubbed from every exception message (an
error body could echo it). Exceptions carry no HTTP response either, because a
response can hold its request's headers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import quote, urlencode

import requests
import urllib3
from urllib3.exceptions import HTTPError, LocationValueError, NewConnectionError, ProtocolError, ReadTimeoutError

from agent_bridge.delivery import Cause, DeliveryError, Retry
from project import metrics, tracing
from project.text import text_problem

logger = logging.getLogger(__name__)

#: Longest wait for the TCP connection: slightly above a multiple of 3 s, the
#: TCP retransmission window, as the requests documentation recommends.
MAX_CONNECT_TIMEOUT = 3.05
_MAX_DETAIL = 300


class AgentError(DeliveryError):
    """A failed Agent call.

    ``status`` is the HTTP status (None when no answer came), ``code`` the
    Agent's machine-readable code (from the body, else the ``X-Error-Code``
    header, else derived from the status), ``detail`` a short human text.
    """

    transient: ClassVar[bool] = False
    retry: ClassVar[Retry] = Retry.NEVER
    cause: ClassVar[Cause] = Cause.AGENT_PERMANENT
    default_code: ClassVar[str] = "AGENT_ERROR"

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.detail = detail
        self.status = status
        self.code = code or self.default_code
        self.method = method
        self.path = path
        #: Seconds from a ``Retry-After`` header, a hint for the retry policy.
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" on {self.method} {self.path}" if self.method else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.code}{status}{where}{detail}"


class AgentTransientError(AgentError):
    """Trying again later may succeed."""

    transient = True
    retry = Retry.NOW_AND_LATER
    cause = Cause.AGENT_TRANSIENT
    default_code = "AGENT_UNAVAILABLE"


class AgentUnavailable(AgentTransientError):
    """The Agent answered, but with 5xx, 429 or AGENT_UNAVAILABLE."""


class AgentTimeout(AgentTransientError):
    """No answer within the configured timeout."""

    default_code = "AGENT_TIMEOUT"


class AgentConnectionError(AgentTransientError):
    """The connection could not be made or broke (refused, DNS, reset...)."""

    default_code = "AGENT_CONNECTION_ERROR"


class AgentOutcomeUnknown(AgentTransientError):
    """A write (POST/PATCH/DELETE) reached the Agent but no answer came back.

    Neither success nor failure may be assumed: the Agent may have applied it, or may still
    apply it later, after a newer write. Retrying is still right (writes are idempotent), but
    the consumer must also read the user back over a horizon (agent_bridge.verification).
    A read (GET) that times out is a plain AgentTimeout: it changes nothing.
    """

    default_code = "AGENT_OUTCOME_UNKNOWN"


class AgentResponseTimeout(AgentTimeout, AgentOutcomeUnknown):
    """The write was sent and the read timeout passed without an answer."""

    default_code = "AGENT_TIMEOUT"


class AgentConnectionLost(AgentConnectionError, AgentOutcomeUnknown):
    """The write was sent and the connection then broke before an answer."""

    default_code = "AGENT_CONNECTION_LOST"


_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def _request_was_sent(exc: HTTPError) -> bool:
    """Whether a failed call got as far as sending its request.

    A failed connection attempt (refused, a connect timeout) never sent anything; a read timeout
    did, and so did a ProtocolError ("Connection aborted": the peer closed or reset the
    connection while we waited for the answer, or broke off the answer).
    """
    return isinstance(exc, ReadTimeoutError | ProtocolError)


class AgentPermanentError(AgentError):
    """The Agent refused the request; the same request will fail again."""

    default_code = "AGENT_REJECTED"


class AgentUserNotFound(AgentPermanentError):
    """404 USER_NOT_FOUND. Callers create the user and retry the update."""

    default_code = "USER_NOT_FOUND"


class AgentAuthError(AgentPermanentError):
    """401 INVALID_SERVICE_TOKEN: AGENT_SERVICE_TOKEN does not match the Agent's."""

    default_code = "INVALID_SERVICE_TOKEN"


class AgentInvalidPayload(AgentPermanentError):
    """422 INVALID_PAYLOAD: the Agent's validation rejected what we sent."""

    default_code = "INVALID_PAYLOAD"


class AgentMissingUserId(AgentPermanentError):
    """400 MISSING_USER_ID: a call without a usable uid (a bug on our side)."""

    default_code = "MISSING_USER_ID"


_PERMANENT_BY_CODE: dict[str, type[AgentPermanentError]] = {
    "USER_NOT_FOUND": AgentUserNotFound,
    "INVALID_SERVICE_TOKEN": AgentAuthError,
    "INVALID_PAYLOAD": AgentInvalidPayload,
    "MISSING_USER_ID": AgentMissingUserId,
}
_PERMANENT_BY_STATUS: dict[int, type[AgentPermanentError]] = {
    401: AgentAuthError,
    422: AgentInvalidPayload,
}


def error_class_for(status: int, code: str | None, detail: str) -> type[AgentError]:
    """Choose the exception for an error answer.

    The status decides first whether the failure is transient: a 5xx or 429
    is, whatever code its body claims. For other answers the Agent's code
    wins; without one (the real Agent's 401/422 bodies carry none) the status
    decides. A 404 without a code is only "user not found" when the detail
    says so, because a bare 404 usually means a wrong AGENT_BASE_URL, and
    "create the user, then retry" would not fix that.
    """
    if status >= 500 or status in (408, 429) or code == "AGENT_UNAVAILABLE":
        return AgentUnavailable
    if code in _PERMANENT_BY_CODE:
        return _PERMANENT_BY_CODE[code]
    if status == 404:
        not_found = detail.strip().lower() == "user not found"
        return AgentUserNotFound if not_found else AgentPermanentError
    return _PERMANENT_BY_STATUS.get(status, AgentPermanentError)


@dataclass(frozen=True)
class AgentAnswer:
    """One HTTP answer of the Agent, read whole."""

    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


# What no header value may hold (http.client's own check, which quotes the value, i.e. the token).
_ILLEGAL_HEADER_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])|^\s|\s$")
USER_AGENT = f"kairos-backend python-urllib3/{urllib3.__version__}"
# One attempt, a redirect answered as it is; built once (urllib3 converts `retries=False` per call).
_ONE_ATTEMPT = urllib3.Retry(False, redirect=False)


class AgentClient:
    """One connection pool to the Agent, authenticated with the service token.

    ``timeout`` is the read timeout in seconds; the connect timeout is the
    same capped at :data:`MAX_CONNECT_TIMEOUT`, so an unreachable Agent is
    detected quickly even when reads are allowed to be slow.
    """

    def __init__(self, *, base_url: str, service_token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = service_token
        self.timeout = (min(float(timeout), MAX_CONNECT_TIMEOUT), float(timeout))
        self._urllib3_timeout = urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1])
        self._headers = {
            "X-Service-Token": service_token,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        # Checked here, raised on each call as the permanent errors they are.
        self._setting_problem = self._setting_problem_of(self.base_url, service_token)
        self.proxy, self.verify = self._environment_for(self.base_url)
        self._pool = self._pool_for(self.proxy, self.verify)

    @staticmethod
    def _setting_problem_of(base_url: str, token: str) -> tuple[str, str] | None:
        """(detail, code) of the permanent error every call raises, when a setting is unusable."""
        try:
            url = urllib3.util.parse_url(base_url)
        except LocationValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            return "AGENT_BASE_URL is not a usable http(s) URL", "INVALID_AGENT_URL"
        if _ILLEGAL_HEADER_VALUE.search(token):
            return "AGENT_SERVICE_TOKEN is not a valid header value", "INVALID_SERVICE_TOKEN_SETTING"
        return None

    @staticmethod
    def _environment_for(base_url: str) -> tuple[str | None, bool | str]:
        """The proxy (HTTP(S)_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
        the environment sets for the Agent's URL, read once, with requests' rules; a ~/.netrc
        login is never sent: the service token is the Agent's only credential."""
        found = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
        return requests.utils.select_proxy(base_url, found["proxies"]), found["verify"]

    @staticmethod
    def _pool_for(proxy: str | None, verify: bool | str) -> urllib3.PoolManager:
        """Kept-alive connections with no retries (the consumer's policy decides) and no redirects
        followed (one could turn PATCH into GET; a 3xx is an error: fix AGENT_BASE_URL)."""
        tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"}
        if verify:
            bundle = verify if isinstance(verify, str) else requests.certs.where()
            tls = {"cert_reqs": "CERT_REQUIRED",
                   **({"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle})}
        options = {"num_pools": 2, "maxsize": 4, "retries": _ONE_ATTEMPT, **tls}
        return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)

    @classmethod
    def from_settings(cls) -> AgentClient:
        """Build the client from the AGENT_* Django settings (DESIGN §3)."""
        # Imported here so that this module (and its tests) import without Django.
        from django.conf import settings

        return cls(
            base_url=settings.AGENT_BASE_URL,
            service_token=settings.AGENT_SERVICE_TOKEN,
            timeout=float(settings.AGENT_TIMEOUT_SECONDS),
        )

    def __repr__(self) -> str:
        return f"AgentClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the Agent's endpoints ---------------------------------------------

    def create_user(
        self,
        *,
        uid: str | uuid.UUID,
        preferences: dict[str, Any] | None = None,
        allergies: dict[str, Any] | None = None,
        dietary_flags: list[str] | None = None,
        vibe_tags: list[str] | None = None,
        allergy_flags: list[str] | None = None,
    ) -> dict[str, Any]:
        """``POST /users/{uid}``, idempotent: ``{"uid", "created": bool}``."""
        payload = {
            "preferences": preferences or {},
            "allergies": allergies or {},
            "dietary_flags": dietary_flags or [],
            "vibe_tags": vibe_tags or [],
            "allergy_flags": allergy_flags or [],
        }
        return self._json("POST", self._user_path(uid), json=payload)

    def get_user(self, *, uid: str | uuid.UUID) -> dict[str, Any]:
        """``GET /users/{uid}``: the Agent's full profile of the user."""
        return self._json("GET", self._user_path(uid))

    def update_preferences(self, *, uid: str | uuid.UUID, preferences: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /users/{uid}``: the Agent deep-merges ``preferences``.

        Allergies are untouched; they only change through
        :meth:`replace_allergies`.
        """
        return self._json("PATCH", self._user_path(uid), json={"preferences": preferences})

    def replace_allergies(
        self,
        *,
        uid: str | uuid.UUID,
        confirmed: list[str],
        intolerances: list[str],
        severity: dict[str, str],
    ) -> dict[str, Any]:
        """``PATCH /users/{uid}/allergies``: a full replace, never a merge.

        Returns ``{"uid", "allergy_flags", "updated": true}``; the Agent
        rebuilds ``allergy_flags`` itself.
        """
        payload = {
            "confirmed": confirmed,
            "intolerances": intolerances,
            "severity": severity,
        }
        return self._json("PATCH", self._user_path(uid, "/allergies"), json=payload)

    def delete_user(self, *, uid: str | uuid.UUID) -> bool:
        """``DELETE /users/{uid}`` with its interactions.

        True when deleted, False when the Agent had no such user: for an
        account deletion that counts as done.
        """
        try:
            self._request("DELETE", self._user_path(uid))
        except AgentUserNotFound:
            return False
        return True

    def get_interactions(
        self,
        *,
        uid: str | uuid.UUID,
        limit: int = 20,
        offset: int = 0,
        include_response: bool = False,
    ) -> dict[str, Any]:
        """``GET /users/{uid}/interactions``, one page, newest first.

        Returns ``{"interactions", "total", "limit", "offset"}``; the Agent
        accepts ``limit`` from 1 to 100.
        """
        params = {
            "limit": limit,
            "offset": offset,
            "include_response": "true" if include_response else "false",
        }
        return self._json("GET", self._user_path(uid, "/interactions"), params=params)

    def clear_interactions(self, *, uid: str | uuid.UUID) -> None:
        """``DELETE /users/{uid}/interactions``; the user record stays.

        Raises :class:`AgentUserNotFound` if the Agent has no such user.
        """
        self._request("DELETE", self._user_path(uid, "/interactions"))

    # --- plumbing ------------------------------------------------------------

    @staticmethod
    def _user_path(uid: str | uuid.UUID, suffix: str = "") -> str:
        text = str(uid).strip() if uid is not None else ""
        if not text:
            # Would otherwise hit /users/ and fail confusingly; this is a caller bug.
            raise AgentMissingUserId("no uid given", code="MISSING_USER_ID")
        return f"/users/{quote(text, safe='')}{suffix}"

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        # A 2xx that is not our JSON: a proxy or a wrong base URL answered. A string that is not
        # text (a lone surrogate) would be stored in the interaction mirror and break its answers.
        if not isinstance(data, dict) or text_problem(data):
            raise AgentUnavailable(
                "the Agent's answer is not a JSON object of valid text",
                status=response.status,
                code="INVALID_RESPONSE",
                method=method,
                path=path,
            )
        return data

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> AgentAnswer:
        """Make one attempt; return a 2xx response or raise a typed AgentError.

        The call is a client span of the current trace (project.tracing): the Agent gets its
        `traceparent`, and its latency is recorded by endpoint and status (project.metrics)."""
        endpoint = f"{method} {_endpoint_of(path)}"
        started = time.monotonic()
        outcome: int | str = "error"
        try:
            with tracing.span(endpoint, kind=tracing.SpanKind.CLIENT, **{"http.request.method": method}) as trace:
                response = self._send(method, path, json=json, params=params, traceparent=trace.traceparent)
            outcome = response.status
        except AgentTimeout:
            outcome = "timeout"
            raise
        except AgentConnectionError:
            outcome = "connection_error"
            raise
        finally:
            metrics.agent_request_observe(endpoint=endpoint, status=outcome, seconds=time.monotonic() - started)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug(
            "agent %s %s -> %s in %.0f ms",
            method,
            path,
            response.status,
            elapsed_ms,
        )
        if 200 <= response.status < 300:
            return response
        raise self._error_from(response, method, path)

    def _send(
        self, method: str, path: str, *, json: dict[str, Any] | None, params: dict[str, Any] | None, traceparent: str
    ) -> AgentAnswer:
        """The HTTP exchange itself (urllib3: requests' Session and its adapter cost as much CPU per
        call as the rest of a delivery); transport failures become typed AgentErrors."""
        if self._setting_problem is not None:
            detail, code = self._setting_problem
            raise AgentPermanentError(detail, code=code, method=method, path=path)
        url = f"{self.base_url}{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        headers = {**self._headers, tracing.HEADER: traceparent}
        body = None
        if json is not None:
            body = _json_dumps(json)
            headers["Content-Type"] = "application/json"
        try:
            answer = self._pool.request(method, url, body=body, headers=headers, timeout=self._urllib3_timeout,
                                        retries=_ONE_ATTEMPT, redirect=False)
        except NewConnectionError as exc:  # refused, unresolvable (a ConnectTimeoutError for urllib3)
            raise AgentConnectionError(
                f"could not reach the Agent ({type(exc).__name__})", method=method, path=path
            ) from exc
        except urllib3.exceptions.TimeoutError as exc:  # connect or read
            unknown = method in _WRITES and _request_was_sent(exc)
            raise (AgentResponseTimeout if unknown else AgentTimeout)(
                f"no answer within {self.timeout[1]:g}s ({type(exc).__name__})",
                method=method,
                path=path,
            ) from exc
        except HTTPError as exc:
            unknown = method in _WRITES and _request_was_sent(exc)
            raise (AgentConnectionLost if unknown else AgentConnectionError)(
                f"could not reach the Agent ({type(exc).__name__})",
                method=method,
                path=path,
            ) from exc
        return AgentAnswer(status=answer.status, headers=answer.headers, body=answer.data)

    def _error_from(self, response: AgentAnswer, method: str, path: str) -> AgentError:
        status = response.status
        code: str | None = None
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            raw_code = body.get("code")
            code = raw_code[:64] if isinstance(raw_code, str) and raw_code else None
            raw_detail = body.get("detail", "")
            # FastAPI's validation errors put a list of field errors in detail.
            detail = raw_detail if isinstance(raw_detail, str) else json.dumps(raw_detail)
        else:
            detail = response.text.strip()
        code = code or response.headers.get("X-Error-Code") or None
        if 300 <= status < 400:
            code = code or "UNEXPECTED_REDIRECT"
            location = response.headers.get("Location", "?")
            detail = f"redirected to {location}; fix AGENT_BASE_URL"
        cls = error_class_for(status, code, detail)
        return cls(
            self._scrub(detail)[:_MAX_DETAIL],
            status=status,
            code=self._scrub(code) if code else None,
            method=method,
            path=path,
            retry_after=_retry_after(response),
        )

    def _scrub(self, text: str) -> str:
        """Remove the service token from text that came from the network."""
        if self._token and self._token in text:
            text = text.replace(self._token, "[redacted]")
        return text


_USER_SEGMENT = re.compile(r"^/users/[^/]+")


def _endpoint_of(path: str) -> str:
    """The path's template, `/users/{uid}/allergies`: a bounded metric label, never a uid."""
    return _USER_SEGMENT.sub("/users/{uid}", path, count=1)


def _json_dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def _retry_after(response: AgentAnswer) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough to ignore
