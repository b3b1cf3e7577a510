"""The double's two HTTP servers: the Agent's contract on the main port, steering on the control port."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import SplitResult, parse_qs, urlsplit

from agent_bridge.devagent.errors import HttpError, canonical_uid, invalid, require_object
from agent_bridge.devagent.faults import LateApply
from agent_bridge.devagent.state import AgentState

logger = logging.getLogger(__name__)


#: Seconds a kept-alive connection may sit idle before the double closes it (uvicorn's default),
#: so that a thread per client connection does not outlive the client's interest.
KEEP_ALIVE_TIMEOUT_S = 5.0


class _Connection:
    """One client connection of a server: whether it is between requests (so may be closed at once)."""

    __slots__ = ("busy", "lock", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()  # held while an answer is written, so closing never cuts one
        self.busy = False


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that binds without a reverse DNS lookup, and keeps connections
    alive (HTTP/1.1) like the real Agent's server does, so a client pays one TCP connection per
    thread, not per call. It knows its open connections, so that :meth:`close_connections`
    can make a stopped port unreachable over connections opened before, too."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, agent: DevAgentServer, keep_alive_s: float) -> None:
        self.agent = agent
        self.keep_alive_s = keep_alive_s
        self.closing = False
        self.accepted = 0  # connections ever opened: tests see whether clients reuse theirs
        self._connections: set[_Connection] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def connection_opened(self, sock: socket.socket) -> _Connection:
        connection = _Connection(sock)
        with self._connections_lock:
            self._connections.add(connection)
            self.accepted += 1
            closing = self.closing
        if closing:  # accepted just before the port was closed: it goes with the others
            _shut(connection)
        return connection

    def connection_finished(self, connection: _Connection) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def close_connections(self) -> None:
        """Close every connection that is between requests now; one that is working on a request
        answers it with ``Connection: close`` and then closes (the handler sees :attr:`closing`)."""
        with self._connections_lock:
            self.closing = True
            connections = list(self._connections)
        for connection in connections:
            with connection.lock:
                if not connection.busy:
                    _shut(connection)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can take
        # seconds on hosts with slow DNS; the double must start instantly.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def _shut(connection: _Connection) -> None:
    # shutdown, not close: the handler thread owns the socket; this sends the FIN at once (a
    # client checks for it before reusing a pooled connection) and wakes a read blocked on it.
    with contextlib.suppress(OSError):  # already gone
        connection.sock.shutdown(socket.SHUT_RDWR)


class _JsonHandler(BaseHTTPRequestHandler):
    """Shared plumbing: read a JSON body, answer JSON, stay quiet on stderr.

    HTTP/1.1 with keep-alive: every answer carries its Content-Length and is written in one
    piece (the buffered wfile is flushed once per answer), and every request's body is read
    whole before the answer, so the next request on the connection starts where it should."""

    server: _Server
    server_version = "devagent/1"
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # buffered: the status line, headers and body leave in one write
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.keep_alive_s  # the socket's timeout: an idle connection is closed
        super().setup()
        self._connection = self.server.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # The FIN goes before the connection stops being counted as open (socketserver closes
            # the socket only later, in shutdown_request): whoever sees it gone can rely on a
            # client seeing it closed too, however late the handler thread gets to run.
            _shut(self._connection)
            self.server.connection_finished(self._connection)

    def handle_one_request(self) -> None:
        if self.server.closing:
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except OSError as exc:  # the client reset or closed the connection: nothing left to answer
            logger.debug("connection from %s ended: %s", self.address_string(), exc)
            self.close_connection = True

    def parse_request(self) -> bool:
        with self._connection.lock:  # from here to the end of the answer, close_connections waits
            self._connection.busy = True
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        """The request's body, read whole. A body whose length is not given as a Content-Length
        (chunked, or a malformed length) is not read: it is treated as empty and the connection
        is closed after the answer, since the next request's start cannot be found."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        if not raw.strip():
            raise invalid("a JSON body is required")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise invalid("body is not valid JSON") from None

    def _send(self, status: int, payload: Any, *, error_code: str | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        with self._connection.lock:
            try:
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection or self.server.closing:
                    self.send_header("Connection", "close")  # also sets close_connection
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                # The client gave up (e.g. its timeout fired during injected latency).
                logger.debug("client went away before %s %s was answered", self.command, self.path)
                self.close_connection = True
            finally:
                self._connection.busy = False

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
        raw = self._read_body()
        presented = self.headers.get("X-Service-Token")
        late = state.take_late_apply(self.command, split.path)
        if late is None:
            status, payload, code = self._answer(state, split, raw, presented, started)
            self._send(status, payload, error_code=code)
            return
        if late.answer == "none":
            # Close the connection unanswered now; the Agent applies the request later anyway.
            self.close_connection = True
            timer = threading.Timer(late.hold_ms / 1000, self._apply_late, args=(late, split, raw, presented, started))
            timer.daemon = True
            timer.start()
            return
        time.sleep(late.hold_ms / 1000)
        status, payload, code = self._apply_late(late, split, raw, presented, started)
        self._send(status, payload, error_code=code)  # long after the client's timeout: it is usually gone

    def _apply_late(
        self, late: LateApply, split: SplitResult, raw: bytes, presented: str | None, started: float
    ) -> tuple[int, Any, str | None]:
        state = self.server.agent.state
        try:
            return self._answer(state, split, raw, presented, started, late=True)
        finally:
            state.late_applied(late)

    def _answer(
        self,
        state: AgentState,
        split: SplitResult,
        raw: bytes,
        presented: str | None,
        started: float,
        *,
        late: bool = False,
    ) -> tuple[int, Any, str | None]:
        path = split.path
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
                "late": late,
            }
        )
        return status, payload, error_code

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
        uid = canonical_uid(match["uid"])
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


_TAMPER_PATH = re.compile(r"^/tamper/(?P<uid>[^/]+)/?$")
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
                state.set_fault(require_object(self._body(raw), "body"))
                return 200, {"fault": state.current_fault()}
        if path == "/misbehave":
            if method == "GET":
                return 200, {"misbehaviour": state.current_misbehaviour()}
            if method == "POST":
                return 200, {"misbehaviour": state.set_misbehaviour(require_object(self._body(raw), "body"))}
        if method == "POST" and path == "/forget":
            state.forget()
            return 200, {"forgotten": True}
        tamper = _TAMPER_PATH.match(path)
        if tamper and method == "POST":
            return 200, state.tamper(canonical_uid(tamper["uid"]), self._parse_json(raw))
        if method == "POST" and path == "/down":
            agent.down()
            return 200, {"main_up": False}
        if method == "POST" and path == "/up":
            agent.up()
            return 200, {"main_up": True}
        match = _INTERACTION_PATH.match(path)
        if match and method == "POST":
            uid = canonical_uid(match["uid"])
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
        keep_alive_s: float = KEEP_ALIVE_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.control_port = control_port
        self.keep_alive_s = keep_alive_s
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

    @property
    def connections_accepted(self) -> int:
        """Connections the main port has opened since it was last brought up."""
        main = self._main
        return main.accepted if main is not None else 0

    @property
    def connections_open(self) -> int:
        """Connections open on the main port now (each holds a handler thread)."""
        main = self._main
        return main.open_connections if main is not None else 0

    def start(self) -> DevAgentServer:
        self._control = _Server((self.host, self.control_port), _ControlHandler, self, self.keep_alive_s)
        self.control_port = self._control.server_address[1]
        self._control_thread = _serve(self._control, "devagent-control")
        self.up()
        return self

    def up(self) -> None:
        """Open the main port (again); a no-op when it is already open."""
        with self._switch:
            if self._main is not None:
                return
            self._main = _Server((self.host, self.port), _AgentHandler, self, self.keep_alive_s)
            self.port = self._main.server_address[1]
            self._main_thread = _serve(self._main, "devagent-main")

    def down(self) -> None:
        """Close the listening socket so that new connections are refused, and the open ones."""
        # Held throughout, so a concurrent up() cannot bind before the close.
        with self._switch:
            server, thread = self._main, self._main_thread
            self._main = self._main_thread = None
            _close(server, thread)

    def stop(self) -> None:
        self.down()
        control, thread = self._control, self._control_thread
        self._control = self._control_thread = None
        _close(control, thread)

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


def _close(server: _Server | None, thread: threading.Thread | None) -> None:
    """Stop serving, close the listening socket and the open connections, and wait for the serving thread."""
    if server is not None:
        server.shutdown()
        server.server_close()
        server.close_connections()
    if thread is not None:
        thread.join(timeout=5)
