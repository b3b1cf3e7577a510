"""Profile a bus process under a burst of events: `python -m bench.profile [--transport embedded|rabbitmq]`,
or an API worker under wrk: `python -m bench.profile --process api --endpoint allergies_get` (one gunicorn worker,
py-spy on it, only the samples inside a request counted).

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--transport", choices=["embedded", "rabbitmq"], default="embedded")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--process", choices=["consumer", "relay", "api"], default="consumer")
    parser.add_argument("--endpoint", choices=sorted(API_ENDPOINTS), default="allergies_get",
                        help="with --process api: what wrk requests")
    parser.add_argument("--seconds", type=float, default=10, help="with --process api: how long wrk runs")
    parser.add_argument("--idle", action="store_true", help="with --process api: count waits (database) too")
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the raw py-spy output")
    parser.add_argument("--top", type=int, default=40, help="frames to print")
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
                  amqp_url=amqp_url, api_workers=1)
    try:
        stack.start_agent()
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        from bench import bus

        if args.process == "api":
            return profile_api(stack, spy_bin, args)
        users = bus.users_create(args.events, label="prof")
        bus.agent_users_create(stack, users)
        stack.start_bus(amqp=bool(amqp_url), consumers=1)
        pid = stack.pids("relay" if args.process == "relay" else "consumer")[0]
        raw = Path(args.out) / f"pyspy-{args.process}-{args.transport}.txt"
        spy = subprocess.Popen([spy_bin, "record", "--idle", "--format", "raw", "--rate", "200", "-o", str(raw),
                                "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        result = bus.burst(stack, users, cap_s=120)
        spy.send_signal(2)
        spy.wait(30)
        print(f"burst: {result}")
        print(summarize(raw))
        print(f"raw profile: {raw}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
