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

Both ports speak HTTP/1.1 and keep connections alive, as the real Agent's server does (a
client pays one TCP connection per thread, not per call); a connection idle for
``--keep-alive`` seconds (5) is closed.

A second, *control* server on its own port lets tests and demos inspect the
state, read the request log, inject latency and error statuses, and take the
main port down (connections refused, open ones closed) and up again. It is on a separate port so
it stays reachable while the main port is down.

It imports no Django (only the backend's pure contract modules), so it starts in a few
milliseconds as its own process::

    python -m agent_bridge.devagent --port 4021 --control-port 4022 \
        --token "$AGENT_SERVICE_TOKEN"

or in-process from tests with :class:`DevAgentServer`; tests drive a running
double with ``tests.devagent_control.DevAgentControl``.

The package: ``errors`` (error answers, input parsing), ``faults`` (what the
main port does wrong on command), ``state`` (the in-memory Agent), ``server``
(the two HTTP servers), ``cli`` (the command line). Contract rules (severity
levels, ``allergy_flags``, the preference merge) are imported from the
backend's own pure modules, never re-declared.
"""

from agent_bridge.devagent.cli import LISTENING_LINE_RE, main
from agent_bridge.devagent.server import DevAgentServer
from agent_bridge.devagent.state import AgentState

__all__ = ["LISTENING_LINE_RE", "AgentState", "DevAgentServer", "main"]
