"""Raw ceilings, no application code: RabbitMQ publish-with-confirms + consume, and plain HTTP.

Run as `python -m bench.raw pika|http ...`; prints one JSON object. The pika ceiling runs the
publisher and the consumer in two processes, like the relay and the consumer daemon. The HTTP
ceiling runs `--processes` client processes of `--threads` threads each (one urllib3 pool, the Agent
client's library, so one kept-alive connection, and one user per thread, like one consumer process with
that many Agent calls in flight per process):
`--processes 1 --threads 1` is the sequential ceiling.
"""
import argparse
import json
import multiprocessing
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pika
import urllib3

from bench.cpu import machine_busy_seconds


def _consume(url: str, queue: str, n: int, prefetch: int, ready, result) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    got = 0
    last = 0.0
    ready.set()
    for method, _properties, _body in channel.consume(queue, inactivity_timeout=30):
        if method is None:
            break
        channel.basic_ack(method.delivery_tag)
        got += 1
        last = time.time()
        if got >= n:
            break
    channel.cancel()
    connection.close()
    result.put({"consumed": got, "last_consumed_at": last})


def pika_ceiling(url: str, n: int, prefetch: int) -> dict:
    queue = f"kairos-bench-raw-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
    channel.confirm_delivery()
    ctx = multiprocessing.get_context("spawn")
    ready, result = ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=_consume, args=(url, queue, n, prefetch, ready, result))
    consumer.start()
    ready.wait(30)
    body = json.dumps({"id": str(uuid.uuid4()), "type": "allergies.replaced", "schema": 1,
                       "occurred_at": "2026-11-22T10:00:00Z", "uid": str(uuid.uuid4()),
                       "data": {"revision": 1, "confirmed": ["peanuts"]}}).encode()
    props = pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent)
    started = time.time()
    for _ in range(n):
        channel.basic_publish("", queue, body, properties=props, mandatory=True)
    published = time.time()
    outcome = result.get(timeout=120)
    consumer.join(10)
    channel.queue_delete(queue)
    connection.close()
    elapsed = outcome["last_consumed_at"] - started
    return {
        "messages": n,
        "consumed": outcome["consumed"],
        "publish_rate": round(n / (published - started), 1),
        "rate": round(outcome["consumed"] / elapsed, 1) if elapsed > 0 else None,
        "prefetch": prefetch,
    }


PAYLOAD = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "anaphylactic"}}


def _http_session(agent_url: str, token: str) -> tuple[urllib3.PoolManager, str, dict]:
    session = urllib3.PoolManager(retries=False, timeout=10)
    uid = str(uuid.uuid4())
    headers = {"X-Service-Token": token, "Accept": "application/json", "Content-Type": "application/json"}
    created = session.request("POST", f"{agent_url}/users/{uid}", body=b"{}", headers=headers)
    assert 200 <= created.status < 300, created.status
    return session, uid, headers


def _http_client(agent_url: str, token: str, n: int, threads: int, ready, start, result) -> None:
    """One client process: `threads` threads share `n` PATCHes, each thread its own session and user."""
    sessions = [_http_session(agent_url, token) for _ in range(threads)]
    left = [n]
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    body = json.dumps(PAYLOAD).encode()

    def work(session: urllib3.PoolManager, uid: str, headers: dict) -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            response = session.request("PATCH", f"{agent_url}/users/{uid}/allergies", body=body, headers=headers)
            json.loads(response.data)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                errors[0] += not 200 <= response.status < 300

    ready.put(True)
    start.wait(60)
    started, cpu_started = time.time(), time.process_time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, *s) for s in sessions]:
            future.result()
    result.put({"requests": len(latencies), "errors": errors[0], "started": started, "finished": time.time(),
                "cpu_s": time.process_time() - cpu_started, "latencies": latencies})


def http_ceiling(agent_url: str, token: str, n: int, *, processes: int = 1, threads: int = 1) -> dict:
    """`n` PATCH /users/{uid}/allergies in total, `processes` × `threads` of them in flight at once."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    share = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    clients = [ctx.Process(target=_http_client, args=(agent_url, token, k, threads, ready, start, result))
               for k in share]
    for client in clients:
        client.start()
    for _ in clients:
        ready.get(timeout=60)  # every client's sessions are set up before the clock starts
    machine_started = machine_busy_seconds()
    start.set()
    outcomes = [result.get(timeout=300) for _ in clients]
    machine_s = machine_busy_seconds() - machine_started
    for client in clients:
        client.join(10)
    elapsed = max(o["finished"] for o in outcomes) - min(o["started"] for o in outcomes)
    latencies = sorted(x for o in outcomes for x in o["latencies"])
    done = len(latencies)
    return {
        "requests": done,
        "errors": sum(o["errors"] for o in outcomes),
        "concurrency": processes * threads,
        "processes": processes,
        "threads": threads,
        "rate": round(done / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": round(latencies[done // 2] * 1000, 2) if done else None,
        "p99_ms": round(latencies[min(done - 1, int(done * 0.99))] * 1000, 2) if done else None,
        # CPU ms per call: the client processes' own, and the machine's (the client, the double and
        # whatever else ran), so the bus's per-event CPU has something to be set beside.
        "cpu_ms_per_call": {"client": round(1000 * sum(o["cpu_s"] for o in outcomes) / done, 3),
                            "machine": round(1000 * machine_s / done, 3)} if done else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pika")
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--prefetch", type=int, default=10)
    h = sub.add_parser("http")
    h.add_argument("--url", required=True)
    h.add_argument("--token", required=True)
    h.add_argument("--n", type=int, default=1000)
    h.add_argument("--processes", type=int, default=1, help="client processes (like consumer processes)")
    h.add_argument("--threads", type=int, default=1, help="requests in flight per client process")
    args = parser.parse_args(argv)
    if args.what == "pika":
        out = pika_ceiling(args.url, args.n, args.prefetch)
    else:
        out = http_ceiling(args.url, args.token, args.n, processes=args.processes, threads=args.threads)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
