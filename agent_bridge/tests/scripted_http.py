"""A scripted HTTP/1.1 server on loopback, for the tests of the Agent client.

The Agent client's tests run against real HTTP, so that they test the client whatever HTTP library
it uses underneath (a mocking library such as ``responses`` patches one library's internals). The
API follows ``responses.RequestsMock``: answers are queued per method and path with :meth:`add`
(``get``/``post``/``patch``/``delete``), each is served once, in the order added, and every request
is recorded in :attr:`ScriptedServer.calls`. :meth:`ScriptedServer.verify` (run by the ``scripted``
fixture at teardown) fails the test if a request came that nothing was scripted for, or if an
answer was never asked for.

An answer's ``action`` scripts a network failure instead: ``"close"`` reads the request and closes
the connection without answering; ``"stall"`` reads it and answers nothing for
:data:`STALL_SECONDS` (client timeouts in tests stay well below), then closes.
:func:`refused_base_url` gives a base URL where nothing listens.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

Action = Literal["close", "stall"]
Query = dict[str, list[str]]

#: How long a ``"stall"`` answer holds back (cut short when the server stops).
STALL_SECONDS = 2.0
#: The status answered to a request nothing was scripted for.
UNSCRIPTED_STATUS = 599
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Call:
    """One request the server received.

    ``path`` is the request-target's path as sent (percent-escapes kept), ``query`` its query
    string parsed with :func:`urllib.parse.parse_qs` (a dict of lists, blank values kept),
    ``headers`` the request headers (case-insensitive: ``headers["x-service-token"]``; a missing
    one is None), ``body`` the body as bytes (``b""`` when none came).
    """

    method: str
    path: str
    query: Query
    headers: Message
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class Answer:
    """One scripted answer, for the first request of its method and path (and query, if given)."""

    method: str
    path: str
    query: Query | None
    status: int
    body: bytes
    headers: dict[str, str]
    action: Action | None
    served: bool = field(default=False)

    def matches(self, method: str, path: str, query: Query) -> bool:
        return (self.method, self.path) == (method, path) and (self.query is None or self.query == query)

    def __str__(self) -> str:
        query = f" query={self.query}" if self.query is not None else ""
        what = self.action or f"{self.status}"
        return f"{self.method} {self.path}{query} -> {what}"


def _query_of(query: Mapping[str, str | Sequence[str]]) -> Query:
    """{"limit": "5"} or {"limit": ["5"]} → {"limit": ["5"]}, as parse_qs gives."""
    return {key: [value] if isinstance(value, str) else list(value) for key, value in query.items()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as a real Agent allows
    timeout = 10  # an idle kept-alive connection is dropped after this long

    def _handle(self) -> None:
        body = self._read_body()
        target = urlsplit(self.path)
        call = Call(
            method=self.command,
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        answer = self.server.scripted.answer_for(call)
        if answer is None:
            self._send(UNSCRIPTED_STATUS, f"unscripted request: {call.method} {self.path}".encode(), {})
        elif answer.action == "close":
            self.close_connection = True
        elif answer.action == "stall":
            self.server.stopping.wait(STALL_SECONDS)
            self.close_connection = True
        else:
            self._send(answer.status, answer.body, answer.headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after the chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        sent = {name.lower() for name in headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if body and "content-type" not in sent:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        if status not in _NO_BODY_STATUSES:  # RFC 9110: no Content-Length on a 204 or 304
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is its own."""


class _Server(ThreadingHTTPServer):
    """Remembers its open connections, so that stopping also ends the kept-alive ones."""

    daemon_threads = True

    def __init__(self, scripted: ScriptedServer) -> None:
        self.scripted = scripted
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.accepted = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already closed by its peer
                connection.shutdown(socket.SHUT_RDWR)


class ScriptedServer:
    """The server and its script. Use as a context manager (or the ``scripted`` fixture)."""

    def __init__(self) -> None:
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        #: Every request received, in order (unscripted ones included).
        self.calls: list[Call] = []
        #: The requests nothing was scripted for (answered 599).
        self.unscripted: list[Call] = []
        #: Whether :meth:`verify` requires every added answer to have been served.
        self.assert_all_served = True
        self._server = _Server(self)
        # shutdown() waits for serve_forever's next poll: a short one keeps teardowns quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="scripted-http", daemon=True
        )
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (kept-alive calls share one)."""
        return self._server.accepted

    # --- the script ------------------------------------------------------------------------------

    def add(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        action: Action | None = None,
        query: Mapping[str, str | Sequence[str]] | None = None,
    ) -> None:
        """Queue one answer for a request of ``method`` on ``path`` (no query string in it).

        With ``query``, only a request whose parsed query is exactly that matches (values as
        strings or lists of strings). ``json`` is sent as application/json; ``body`` as it is
        (text/plain unless ``headers`` give a Content-Type). ``action`` answers nothing instead.
        """
        if "?" in path:
            raise ValueError(f"give the query as query=..., not in the path: {path!r}")
        if json is not None and body is not None:
            raise ValueError("give json or body, not both")
        headers = dict(headers or {})
        if json is not None:
            payload = jsonlib.dumps(json).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        else:
            payload = body.encode() if isinstance(body, str) else (body or b"")
        if payload and status in _NO_BODY_STATUSES:
            raise ValueError(f"a {status} answer has no body")
        answer = Answer(
            method=method.upper(),
            path=path,
            query=_query_of(query) if query is not None else None,
            status=status,
            body=payload,
            headers=headers,
            action=action,
        )
        with self._lock:
            self._answers.append(answer)

    def get(self, path: str, **kwargs: Any) -> None:
        self.add("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> None:
        self.add("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> None:
        self.add("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> None:
        self.add("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> None:
        self.add("DELETE", path, **kwargs)

    def answer_for(self, call: Call) -> Answer | None:
        """Record ``call`` and take the first unserved answer that matches it (None: unscripted)."""
        with self._lock:
            self.calls.append(call)
            for answer in self._answers:
                if not answer.served and answer.matches(call.method, call.path, call.query):
                    answer.served = True
                    return answer
            self.unscripted.append(call)
            return None

    def verify(self) -> None:
        """Fail if a request came unscripted, or (with :attr:`assert_all_served`) if an answer was
        never asked for."""
        with self._lock:
            unscripted = [f"{call.method} {call.path} query={call.query}" for call in self.unscripted]
            unserved = [str(answer) for answer in self._answers if not answer.served]
        problems = []
        if unscripted:
            problems.append("requests nothing was scripted for (answered 599): " + "; ".join(unscripted))
        if unserved and self.assert_all_served:
            problems.append("scripted answers never asked for: " + "; ".join(unserved))
        if problems:
            raise AssertionError("scripted HTTP server: " + " | ".join(problems))

    # --- lifetime --------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release stalled answers and end the open connections."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def refused_base_url() -> str:
    """A base URL on loopback where nothing listens (a port just bound and released): connecting
    to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
