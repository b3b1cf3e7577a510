"""HTTP load from a separate process: wrk (Debian package `wrk`) driven by a generated Lua script.

The script rotates over the given tokens (one per simulated user) and, for PUT, over two
bodies, and prints one JSON line with wrk's own latency histogram percentiles at the end.
"""
import json
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUT_BODIES = [
    {"confirmed": ["peanuts", "shellfish"], "intolerances": ["lactose"],
     "severity": {"peanuts": "anaphylactic", "shellfish": "severe", "lactose": "intolerance"}},
    {"confirmed": ["peanuts"], "intolerances": ["gluten"],
     "severity": {"peanuts": "anaphylactic", "gluten": "intolerance"}},
]

LUA_TEMPLATE = r"""
local tokens = {%(tokens)s}
local bodies = {%(bodies)s}
local method = "%(method)s"
local path = "%(path)s"
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local counter = 0
function init(args)
  counter = (id or 0) * 7
end
function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json"}
  if #tokens > 0 then
    headers["Authorization"] = "Token " .. tokens[(counter %% #tokens) + 1]
  end
  local body = nil
  if #bodies > 0 then body = bodies[(counter %% #bodies) + 1] end
  return wrk.format(method, path, headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"non2xx":%%d,"errors_connect":%%d,"errors_read":%%d,' ..
    '"errors_write":%%d,"errors_timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class LoadSpec:
    threads: int = 2
    connections: int = 16
    duration_s: float = 8.0
    warmup_s: float = 2.0
    timeout_s: float = 30.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base: str, path: str, *, method: str, tokens: list[str], spec: LoadSpec, body: bool, warm: bool = True
) -> dict[str, Any]:
    """One measured wrk run against base + path, after a discarded warm-up run of spec.warmup_s seconds."""
    script = LUA_TEMPLATE % {
        "tokens": ", ".join(_lua_string(t) for t in tokens),
        "bodies": ", ".join(_lua_string(json.dumps(b)) for b in PUT_BODIES) if body else "",
        "method": method,
        "path": path,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = Path(handle.name)
    try:
        if warm and spec.warmup_s > 0:
            _wrk(base, script_path, spec, spec.warmup_s)
        result = _wrk(base, script_path, spec, spec.duration_s)
    finally:
        script_path.unlink(missing_ok=True)
    seconds = result["duration_us"] / 1e6
    ok = result["requests"] - result["non2xx"]
    return {
        "method": method,
        "path": path,
        "requests": result["requests"],
        "non2xx": result["non2xx"],
        "socket_errors": sum(result[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout")),
        "duration_s": round(seconds, 2),
        "rps": round(result["requests"] / seconds, 1) if seconds else None,
        "ok_rps": round(ok / seconds, 1) if seconds else None,
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "mean_ms": round(result["mean_us"] / 1000, 3),
        "connections": spec.connections,
        "threads": spec.threads,
    }


def _wrk(base: str, script: Path, spec: LoadSpec, duration: float) -> dict[str, Any]:
    args = ["wrk", f"-t{spec.threads}", f"-c{spec.connections}", f"-d{duration:g}s", f"--timeout={spec.timeout_s:g}s",
            "-s", str(script), base]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=duration + spec.timeout_s + 30,
                               check=True)
    for line in completed.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk printed no result: {completed.stdout}\n{completed.stderr}")


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one endpoint: totals for throughput, the median round for latencies.

    wrk reports percentiles per run, and percentiles of different runs cannot be merged
    exactly, so p50/p90/p99 are the median over rounds; `max_ms` is the maximum. Every round is
    kept under "rounds".
    """
    if len(runs) == 1:
        return {**runs[0], "rounds": runs}
    seconds = sum(r["duration_s"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    non2xx = sum(r["non2xx"] for r in runs)
    merged = {key: runs[0][key] for key in ("method", "path", "connections", "threads")}
    merged.update(
        requests=requests,
        non2xx=non2xx,
        socket_errors=sum(r["socket_errors"] for r in runs),
        duration_s=round(seconds, 2),
        rps=round(requests / seconds, 1) if seconds else None,
        ok_rps=round((requests - non2xx) / seconds, 1) if seconds else None,
        max_ms=max(r["max_ms"] for r in runs),
        rounds=runs,
    )
    # A round in which no request completed (the synchronous design with the Agent down) has
    # no latency to speak of: it must not pull the median down to 0.
    measured = [r for r in runs if r["requests"] > 0] or runs
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
        merged[key] = statistics.median(r[key] for r in measured)
    return merged
