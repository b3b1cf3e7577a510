"""Raw ceilings, no application code: RabbitMQ publish-with-confirms + consume, and plain HTTP.

Run as `python -m bench.raw pika|http ...`; prints one JSON object. The pika ceiling runs the
publisher and the consumer in two processes, like the relay and the consumer daemon.
"""
import argparse
import json
import multiprocessing
import sys
import time
import uuid

import pika
import requests


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


def http_ceiling(agent_url: str, token: str, n: int) -> dict:
    """Sequential PATCH /users/{uid}/allergies with one requests.Session, as one consumer would."""
    session = requests.Session()
    uid = str(uuid.uuid4())
    headers = {"X-Service-Token": token, "Accept": "application/json"}
    session.post(f"{agent_url}/users/{uid}", json={}, headers=headers, timeout=10).raise_for_status()
    payload = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "anaphylactic"}}
    latencies = []
    started = time.time()
    for _ in range(n):
        t0 = time.perf_counter()
        session.patch(f"{agent_url}/users/{uid}/allergies", json=payload, headers=headers, timeout=10)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.time() - started
    latencies.sort()
    return {"requests": n, "rate": round(n / elapsed, 1), "p50_ms": round(latencies[n // 2] * 1000, 2)}


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
    args = parser.parse_args(argv)
    if args.what == "pika":
        out = pika_ceiling(args.url, args.n, args.prefetch)
    else:
        out = http_ceiling(args.url, args.token, args.n)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
