"""bench.raw: the HTTP ceiling really has processes × threads requests in flight (a real double on loopback)."""
from agent_bridge.devagent.server import DevAgentServer
from bench import raw

TOKEN = "bench-raw-test-token-" + "0123456789abcdef" * 2


def test_the_concurrent_http_ceiling_spreads_its_requests_over_processes_times_threads_users():
    # 400 calls, not 40: the machine's busy time is counted in clock ticks (10 ms), and 40 calls
    # once took less than one of them, so the machine read 0.0 ms per call (CI, stop 28's rerun).
    with DevAgentServer(token=TOKEN) as agent:
        out = raw.http_ceiling(agent.base_url, TOKEN, 400, processes=2, threads=3)
        patches = [e for e in agent.state.request_log() if e["method"] == "PATCH"]
    assert out["concurrency"] == 6 and out["requests"] == 400 and out["errors"] == 0
    assert len(patches) == 400
    assert len({e["path"] for e in patches}) == 6  # one user (and session) per thread in each process
    assert out["rate"] > 0
    assert out["cpu_ms_per_call"]["client"] > 0  # the client processes' CPU over the measured window
    assert out["cpu_ms_per_call"]["machine"] > 0


def test_the_sequential_ceiling_is_one_in_flight():
    with DevAgentServer(token=TOKEN) as agent:
        out = raw.http_ceiling(agent.base_url, TOKEN, 10)
        patches = [e for e in agent.state.request_log() if e["method"] == "PATCH"]
    assert out["concurrency"] == 1 and len({e["path"] for e in patches}) == 1
