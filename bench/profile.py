"""Profile a bus process under a burst of events: `python -m bench.profile [--transport embedded|rabbitmq]`,
or an API worker under wrk: `python -m bench.profile --process api --endpoint allergies_get` (one gunicorn worker,
py-spy on it, only the samples inside a request counted), or what each API request costs in CPU:
`python -m bench.profile --process api-cpu [--baseline REF]` (gunicorn's workers and the run's PostgreSQL
backends, CPU ms per request from /proc, interleaved rounds: on a shared machine CPU time per request moves far
less with the others' load than requests per second do).

Starts the same stack as `python -m bench`, runs one consumer (and the relay, for RabbitMQ)
under `py-spy record --idle` (wall-clock samples, so waits on the database, the broker and
sleeps show up), commits a burst of allergy changes, and prints where the consumer's time goes
(inclusive share per frame, and the leaf frames). The raw py-spy output is kept for flame graphs.
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.cpu import CpuMeter, postgres_backends, process_seconds, rabbitmq_pids
from bench.stack import Stack


def summarize(raw: Path, *, top: int = 40, keep: str = "") -> str:
    inclusive: collections.Counter = collections.Counter()
    leaves: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if keep and not any(keep in f for f in frames):
            continue
        weight = int(count)
        total += weight
        for frame in set(frames):
            inclusive[frame] += weight
        leaves[frames[-1]] += weight
    out = [f"{total} samples" + (f" in frames matching {keep!r}" if keep else "")]
    out += [f"{v / total * 100:5.1f}%  {k[:160]}" for k, v in inclusive.most_common(top)]
    out += ["--- leaf frames"] + [f"{v / total * 100:5.1f}%  {k[:160]}" for k, v in leaves.most_common(15)]
    return "\n".join(out)


API_ENDPOINTS = {
    "allergies_get": ("GET", "/api/allergies/"), "allergies_put": ("PUT", "/api/allergies/"),
    "peer_get": ("GET", "/api/bench/peer/allergies/"), "peer_put": ("PUT", "/api/bench/peer/allergies/"),
    "ceiling_get": ("GET", "/api/bench/ceiling/"), "ceiling_put": ("PUT", "/api/bench/ceiling/"),
    "ceiling_auth_get": ("GET", "/api/bench/ceiling-auth/"),
}


CPU_ENDPOINTS = ("allergies_get", "peer_get", "ceiling_get", "allergies_put", "peer_put", "ceiling_put")


def profile_api(stack: Stack, spy_bin: str, args: argparse.Namespace) -> int:
    from bench import bus, load
    from bench.run import Bench

    stack.start_api()
    users = bus.users_create(16, label="prof")
    bench = Bench.__new__(Bench)
    bench.stack = stack
    tokens = bench.tokens_for(users)[0] if not args.endpoint.startswith("peer") else Bench.peer_tokens_for(users)
    method, path = API_ENDPOINTS[args.endpoint]
    spec = load.LoadSpec(threads=1, connections=4, duration_s=args.seconds, warmup_s=1)
    load.run_wrk(stack.api_url, path, method=method, tokens=tokens, spec=spec, body=method == "PUT", warm=True)
    raw = Path(args.out) / f"pyspy-api-{args.endpoint}.txt"
    master = stack.pids("api")[0]
    spy = subprocess.Popen([spy_bin, "record", "--subprocesses", *(["--idle"] if args.idle else []), "--format",
                            "raw", "--rate", "500", "-o", str(raw), "--pid", str(master)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    result = load.run_wrk(stack.api_url, path, method=method, tokens=tokens, spec=spec, body=method == "PUT",
                          warm=False)
    spy.send_signal(2)
    spy.wait(30)
    print(f"wrk: {result['ok_rps']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    print(summarize(raw, keep="handle_request", top=args.top))
    print(f"raw profile: {raw}")
    return 0


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (gone ones count 0)."""
    return sum(process_seconds(pid) or 0.0 for pid in pids)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def profile_api_cpu(stack: Stack, args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from bench import bus, load
    from bench.run import Bench

    stack.start_api()
    masters = {"": stack.pids("api")[0]}
    bench = Bench.__new__(Bench)
    bench.stack = stack
    bench.workdir = stack.workdir
    users = bus.users_create(32, label="cpu")
    tokens, peer_tokens = bench.tokens_for(users)[0], Bench.peer_tokens_for(users)
    names = args.endpoints.split(",") if args.endpoints else list(CPU_ENDPOINTS)
    endpoints = [(name, stack.api_url, API_ENDPOINTS[name]) for name in names]
    if args.baseline:
        url = bench.baseline_start(args.baseline)
        masters["baseline_"] = stack.pids("api_baseline")[0]
        endpoints += [(f"baseline_{name}", url, API_ENDPOINTS[name]) for name in names if name.startswith("allergies")]
    database = urlsplit(stack.database_url).path.lstrip("/")
    spec = load.LoadSpec(duration_s=args.seconds, warmup_s=1)
    totals: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name, *_ in endpoints}  # requests, app s, db s
    for index in range(args.rounds):
        for name, url, (method, path) in endpoints:
            master = masters["baseline_" if name.startswith("baseline_") else ""]
            credentials = [] if name.startswith("ceiling") else peer_tokens if name.startswith("peer") else tokens
            load.run_wrk(url, path, method=method, tokens=credentials, spec=spec, body=method == "PUT", warm=index == 0)
            workers = _children(master)
            app0, db0 = _cpu_seconds(workers), {pid: _cpu_seconds([pid]) for pid in postgres_backends(database)}
            result = load.run_wrk(url, path, method=method, tokens=credentials, spec=spec, body=method == "PUT",
                                  warm=False)
            app = _cpu_seconds(workers) - app0
            # A backend that ended meanwhile is lost (rare: connections persist); a new one counts from 0.
            db = sum(_cpu_seconds([pid]) - db0.get(pid, 0.0) for pid in postgres_backends(database))
            requests = result["ok_rps"] * args.seconds
            totals[name] = [totals[name][0] + requests, totals[name][1] + app, totals[name][2] + db]
    print(f"CPU per request over {args.rounds} interleaved rounds of {args.seconds} s (wrk 2 threads, 16 connections)")
    print(f"{'endpoint':28} {'req/s':>8} {'app ms':>8} {'db ms':>8} {'total ms':>9}")
    for name, (requests, app, db) in totals.items():
        per = 1000 / max(requests, 1)
        print(f"{name:28} {requests / (args.rounds * args.seconds):8.1f} {app * per:8.3f} {db * per:8.3f} "
              f"{(app + db) * per:9.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--transport", choices=["embedded", "rabbitmq"], default="embedded")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--process", choices=["consumer", "relay", "api", "api-cpu"], default="consumer")
    parser.add_argument("--endpoint", choices=sorted(API_ENDPOINTS), default="allergies_get",
                        help="with --process api: what wrk requests")
    parser.add_argument("--seconds", type=float, default=10, help="with --process api: how long wrk runs")
    parser.add_argument("--idle", action="store_true", help="with --process api: count waits (database) too")
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the raw py-spy output")
    parser.add_argument("--top", type=int, default=40, help="frames to print")
    parser.add_argument("--rounds", type=int, default=3, help="with --process api-cpu: interleaved rounds")
    parser.add_argument("--baseline", metavar="REF", help="with --process api-cpu: also REF's /api/allergies/")
    parser.add_argument("--samples", choices=["idle", "active", "gil"], default="idle",
                        help="with a bus process: every thread's wall-clock samples (waits included), only running "
                             "threads', or only the thread holding the GIL (where the interpreter's CPU goes)")
    parser.add_argument("--no-spy", action="store_true",
                        help="with a bus process: no py-spy, only the burst's rate and CPU per event")
    parser.add_argument("--endpoints", metavar="A,B", help="with --process api-cpu: only these (default: "
                        f"{','.join(CPU_ENDPOINTS)}; --baseline adds REF's allergies_* among them)")
    args = parser.parse_args(argv)
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy_bin).exists():
        sys.stderr.write("py-spy is missing: pip install -r bench/requirements.txt\n")
        return 2
    amqp_url = ""
    if args.transport == "rabbitmq":
        amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-profile-"))
    stack = Stack(workdir, database_url=os.environ.get("DATABASE_URL", "postgres://kairos@127.0.0.1:5433/kairos"),
                  amqp_url=amqp_url, api_workers=5 if args.process == "api-cpu" else 1)
    try:
        stack.start_agent()
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        from bench import bus

        if args.process == "api":
            return profile_api(stack, spy_bin, args)
        if args.process == "api-cpu":
            return profile_api_cpu(stack, args)
        users = bus.users_create(args.events, label="prof")
        bus.agent_users_create(stack, users)
        stack.start_bus(amqp=bool(amqp_url), consumers=1)
        pid = stack.pids("relay" if args.process == "relay" else "consumer")[0]
        raw = Path(args.out) / f"pyspy-{args.process}-{args.transport}.txt"
        spy = None
        if not args.no_spy:
            sampled = {"idle": ["--idle"], "active": [], "gil": ["--gil"]}[args.samples]
            spy = subprocess.Popen([spy_bin, "record", *sampled, "--format", "raw", "--rate", "200", "-o", str(raw),
                                    "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        # CPU per event of each process over the drain (moves far less with a shared machine's load than events/s).
        database = urlsplit(stack.database_url).path.lstrip("/")
        meter = CpuMeter(lambda: {
            "consumer": stack.pids("consumer"), "relay": stack.pids("relay"), "agent": stack.pids("devagent"),
            "postgres": postgres_backends(database) if stack.database_kind == "postgresql" else [],
            "rabbitmq": rabbitmq_pids() if amqp_url else [], "bench": [os.getpid()]})
        result = bus.burst(stack, users, cap_s=120, meter=meter)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        print(f"burst: {result}")
        print(f"CPU ms per event{'' if args.no_spy else ' (under py-spy)'}: "
              + ", ".join(f"{name} {ms:.3f}" for name, ms in meter.per_unit_ms(result["delivered"]).items()))
        if spy is not None:
            print(summarize(raw))
            print(f"raw profile: {raw}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
