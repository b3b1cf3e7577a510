"""docs/benchmarks.md and docs/bench/*.png from the results JSON (also `python -m bench --report-only JSON`)."""
from pathlib import Path
from typing import Any

from bench.stats import ratio

CONDITIONS = ("healthy", "slow", "down")  # the JSON is written with sorted keys
TARGETS = {
    "put_p99_down_over_healthy": 1.2,
    "get_share_of_ceiling": 0.50,
    "put_share_of_ceiling": 0.35,
    "api_over_peer": 1.5,
    "p99_over_baseline": 1.0,
    # Issue 12's targets.
    "bus1_share_of_ceiling": 0.80,
    "statements_per_event": 3.0,
    "fairness_p99_ms": 1000.0,
    "propagation_p50_ms": 10.0,
    "propagation_p99_ms": 50.0,
    # "Flat" from 1k to 1M users, on a shared, noisy machine: throughput at 1M ≥ 0.8 × at 1k and p99
    # latency ≤ 1.5 × (a trend, not the noise between two short samples of one run).
    "growth_rate_ratio_min": 0.8,
    "growth_p99_ratio_max": 1.5,
}
GROWTH_TARGET_USERS = 1_000_000


def _get(data: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def default_partitions(results: dict) -> int:
    return _get(results, "bus_settings", "AMQP_PARTITIONS") or 4


def http_concurrent(results: dict, consumers: int) -> dict | None:
    """Raw HTTP to the double at `consumers` × the consumer's concurrency (None: not measured)."""
    by = _get(results, "raw", "http_concurrent_by_consumers") or {}
    if str(consumers) in by:
        return by[str(consumers)]
    return _get(results, "raw", "http_concurrent") if consumers == 1 else None


def bus_ceiling(results: dict, *, consumers: int, amqp: bool) -> tuple[float | None, str]:
    """The bus's ceiling in this run: min(raw pika, raw HTTP at the consumers' concurrency) on
    RabbitMQ, the HTTP one alone on the embedded bus (no broker on its path). Never the sequential
    HTTP figure: a consumer with several calls in flight is held to the same concurrency."""
    http = http_concurrent(results, consumers)
    rate = _get(http or {}, "rate")
    label = f"raw HTTP at {http['concurrency']} in flight {_fmt(rate)}" if http else "raw HTTP concurrent –"
    if not amqp:
        return rate, label
    pika = _get(results, "raw", "pika", "rate")
    if pika is None or rate is None:
        return None, f"raw pika {_fmt(pika)}, {label}"
    return min(pika, rate), f"min(raw pika {_fmt(pika)}, {label})"


def rabbit_key(consumers: int, partitions: int) -> str:
    return f"rabbitmq_c{consumers}_p{partitions}"


def matrix_rows(results: dict) -> list[dict[str, Any]]:
    """The consumers × partitions cells (RabbitMQ) and the embedded consumers: events/s, ÷ one consumer
    (same partitions), ÷ the ceiling at the same concurrency."""
    bus = results.get("bus") or {}
    rows = []
    for name, m in bus.items():
        rate = _get(m, "burst", "events_per_s")
        consumers, partitions = m.get("consumers"), m.get("partitions")
        amqp = m.get("transport") == "rabbitmq"
        one = bus.get(rabbit_key(1, partitions) if amqp else "embedded_1")
        ceiling, _ = bus_ceiling(results, consumers=consumers, amqp=amqp)
        rows.append({"name": name, "transport": m.get("transport"), "consumers": consumers,
                     "partitions": partitions, "events_per_s": rate,
                     "over_one": ratio(rate, _get(one or {}, "burst", "events_per_s")),
                     "over_ceiling": ratio(rate, ceiling), "ceiling": ceiling,
                     "balanced": _get(m, "ownership", "balanced")})
    return rows


def growth_ratios(results: dict) -> list[dict[str, Any]]:
    """Per size and path: events/s and p50/p99 latency ÷ the smallest size's (1k users)."""
    points = _get(results, "growth", "points") or []
    out = []
    for name in ("embedded_1", "rabbitmq_1"):
        base = next((p[name] for p in points if name in p), None)
        for p in points:
            if name not in p:
                continue
            m = p[name]
            out.append({"users": p["users"], "path": name, "events_per_s": _get(m, "burst", "events_per_s"),
                        "p50_ms": _get(m, "latency", "p50_ms"), "p99_ms": _get(m, "latency", "p99_ms"),
                        "rate_ratio": ratio(_get(m, "burst", "events_per_s"), _get(base, "burst", "events_per_s")),
                        "p50_ratio": ratio(_get(m, "latency", "p50_ms"), _get(base, "latency", "p50_ms")),
                        "p99_ratio": ratio(_get(m, "latency", "p99_ms"), _get(base, "latency", "p99_ms"))})
    return out


def _evaluate_bus(results: dict, add) -> None:
    """Issue 12's targets."""
    bus = results.get("bus") or {}
    concurrency = _get(results, "bus_settings", "BUS_CONSUMER_CONCURRENCY")
    parts = default_partitions(results)
    for amqp, name, label in ((True, rabbit_key(1, parts), f"RabbitMQ bus, 1 consumer ({parts} partitions)"),
                              (False, "embedded_1", "Embedded bus, 1 consumer")):
        rate = _get(bus, name, "burst", "events_per_s")
        ceiling, detail = bus_ceiling(results, consumers=1, amqp=amqp)
        add(f"{label} ÷ its ceiling (BUS_CONSUMER_CONCURRENCY {concurrency if concurrency else '–'})",
            ratio(rate, ceiling), TARGETS["bus1_share_of_ceiling"], higher_is_better=True,
            detail=f"{_fmt(rate)} events/s ÷ {detail}")
    q = _get(results, "queries_per_event", "rabbitmq") or {}
    add(f"Statements per event, AMQP path (relay + consumer), amortised over "
        f"{_get(results, 'queries_per_event', 'batch') or '–'} events", q.get("per_event"),
        TARGETS["statements_per_event"], higher_is_better=False,
        detail=", ".join(f"{k} {v}" for k, v in (q.get("per_event_by_process") or {}).items()) or "–")
    for name in ("embedded", "rabbitmq"):
        f = _get(results, "fairness", name) or {}
        queued = _get(f, "flood", "events_queued")
        drain = f.get("flood_drain") or {}
        drained = (f"drained in {_fmt(drain.get('drain_s'))} s" if drain.get("drained")
                   else f"not drained, {drain.get('left', '–')} left")
        add(f"Fairness, {name}: other users' allergy p99 while one user has {_fmt(queued)} events queued",
            _get(f, "latency", "p99_ms"), TARGETS["fairness_p99_ms"], higher_is_better=False,
            detail=f"ms; p50 {_fmt(_get(f, 'latency', 'p50_ms'))} ms; flood {drained}, "
                   f"{_fmt(f.get('flood_agent_calls'))} Agent calls")
    for name in ("embedded_1", rabbit_key(1, parts), rabbit_key(2, parts)):
        lat = _get(bus, name, "latency") or {}
        rate = f"{lat.get('rate_per_s')}/s" if lat else "–"
        add(f"Propagation p50, {name}", lat.get("p50_ms"), TARGETS["propagation_p50_ms"], higher_is_better=False,
            detail=f"ms, {rate}")
        add(f"Propagation p99, {name}", lat.get("p99_ms"), TARGETS["propagation_p99_ms"], higher_is_better=False,
            detail=f"ms, {rate}")
    growth = growth_ratios(results)
    for path in ("embedded_1", "rabbitmq_1"):
        rows = [g for g in growth if g["path"] == path]
        if not rows:
            continue
        top = rows[-1]
        reached = top["users"] >= GROWTH_TARGET_USERS
        size = f"{rows[0]['users']:,} → {top['users']:,} users"
        missing = "" if reached else f" ({GROWTH_TARGET_USERS:,} not reached: not measured)"
        add(f"Growth, {path}: events/s at {top['users']:,} ÷ at {rows[0]['users']:,} users",
            top["rate_ratio"] if reached else None, TARGETS["growth_rate_ratio_min"], higher_is_better=True,
            detail=f"{size}: {_fmt(top['events_per_s'])} ÷ {_fmt(rows[0]['events_per_s'])}{missing}")
        add(f"Growth, {path}: p99 at {top['users']:,} ÷ at {rows[0]['users']:,} users",
            top["p99_ratio"] if reached else None, TARGETS["growth_p99_ratio_max"], higher_is_better=False,
            detail=f"{size}: {_fmt(top['p99_ms'])} ÷ {_fmt(rows[0]['p99_ms'])} ms{missing}")


def evaluate(results: dict) -> list[dict[str, Any]]:
    """Each target: what it asks, the measured value, met / missed / not measured."""
    rows = []

    def add(name: str, value: float | None, limit: float, *, higher_is_better: bool, detail: str) -> None:
        if value is None:
            verdict = "not measured"
        else:
            verdict = "met" if (value >= limit if higher_is_better else value <= limit) else "MISSED"
        rows.append({"target": name, "value": value, "limit": limit, "verdict": verdict, "detail": detail})

    cond = _get(results, "conditions", "conditions") or {}
    healthy = _get(cond, "healthy", "service_put", "p99_ms")
    down = _get(cond, "down", "service_put", "p99_ms")
    add("PUT p99, Agent down ÷ healthy", ratio(down, healthy), TARGETS["put_p99_down_over_healthy"],
        higher_is_better=False, detail=f"{_fmt(down)} ms ÷ {_fmt(healthy)} ms")

    runs = _get(results, "api", "runs") or {}
    baseline = _get(results, "api", "baseline") or {}
    for verb in ("get", "put"):
        ours = _get(runs, f"allergies_{verb}", "ok_rps")
        bare = _get(runs, f"ceiling_{verb}", "ok_rps")
        peer = _get(runs, f"peer_{verb}", "ok_rps")
        add(f"{verb.upper()} /api/allergies/ throughput ÷ bare DRF", ratio(ours, bare),
            TARGETS[f"{verb}_share_of_ceiling"], higher_is_better=True, detail=f"{_fmt(ours)} ÷ {_fmt(bare)} req/s")
        add(f"{verb.upper()} /api/allergies/ throughput ÷ idiomatic DRF peer", ratio(ours, peer),
            TARGETS["api_over_peer"], higher_is_better=True, detail=f"{_fmt(ours)} ÷ {_fmt(peer)} req/s")
        p99 = _get(runs, f"allergies_{verb}", "p99_ms")
        before = _get(runs, f"baseline_allergies_{verb}", "p99_ms")
        add(f"{verb.upper()} /api/allergies/ p99 ÷ before (git {baseline.get('git', '–')}), 16 connections",
            ratio(p99, before), TARGETS["p99_over_baseline"], higher_is_better=False,
            detail=f"{_fmt(p99, 2)} ms ÷ {_fmt(before, 2)} ms")

    _evaluate_bus(results, add)
    return rows


def plots(results: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(name)

    runs = _get(results, "api", "runs") or {}
    if runs:
        labels = [k for k in ("ceiling_get", "ceiling_auth_get", "allergies_get", "peer_get", "baseline_allergies_get",
                              "ceiling_put", "allergies_put", "peer_put", "baseline_allergies_put") if k in runs]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        ax1.bar(labels, [runs[k]["ok_rps"] for k in labels],
                color=["#888" if k.startswith("ceiling") else "#2a7" for k in labels])
        ax1.set_ylabel("requests/s (2xx)")
        ax1.set_title("API throughput vs the bare DRF ceiling")
        ax1.tick_params(axis="x", rotation=30)
        width = 0.4
        xs = range(len(labels))
        ax2.bar([x - width / 2 for x in xs], [runs[k]["p50_ms"] for k in labels], width, label="p50")
        ax2.bar([x + width / 2 for x in xs], [runs[k]["p99_ms"] for k in labels], width, label="p99")
        ax2.set_xticks(list(xs), labels, rotation=30)
        ax2.set_ylabel("latency (ms)")
        ax2.set_title("API latency")
        ax2.legend()
        save(fig, "api.png")

    cond = _get(results, "conditions", "conditions") or {}
    if cond:
        names = [c for c in CONDITIONS if c in cond]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.4
        xs = range(len(names))
        for offset, key, label in ((-width / 2, "service_put", "this service (outbox)"),
                                   (width / 2, "sync_put", "seed 000 (synchronous)")):
            ax1.bar([x + offset for x in xs], [cond[n][key]["p99_ms"] for n in names], width, label=label)
            ax2.bar([x + offset for x in xs], [cond[n][key]["ok_rps"] for n in names], width, label=label)
        ax1.set_yscale("log")
        ax1.set_ylabel("PUT p99 (ms, log)")
        ax1.set_title("PUT /allergies/ p99 by Agent condition")
        ax2.set_ylabel("2xx requests/s")
        ax2.set_title("PUT throughput by Agent condition")
        for ax in (ax1, ax2):
            ax.set_xticks(list(xs), names)
            ax.legend(fontsize=8, loc="upper left")
        ax2.set_ylim(top=max(ax2.get_ylim()[1], 1) * 1.25)
        ax1.set_ylim(top=ax1.get_ylim()[1] * 3)
        save(fig, "agent_conditions.png")

    bus = results.get("bus") or {}
    raw = results.get("raw") or {}
    if bus:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
        raws = [(f"raw {k}", raw[k]["rate"] or 0) for k in ("pika", "http") if k in raw]
        raws += [(f"raw http ×{v['concurrency']}", v["rate"] or 0)
                 for v in (raw.get("http_concurrent_by_consumers") or {}).values()]
        labels = list(bus) + [label for label, _ in raws]
        values = [_get(bus[k], "burst", "events_per_s") or 0 for k in bus] + [v for _, v in raws]
        ax1.bar(labels, values, color=["#2a7"] * len(bus) + ["#888"] * len(raws))
        ax1.set_ylabel("events/s (commit → Agent double)")
        ax1.set_title("Bus throughput (consumers × partitions) vs raw ceilings")
        ax1.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
        latency = [(n, bus[n]["latency"]) for n in bus if bus[n].get("latency")]
        latency += [(f"fairness {n}", f["latency"]) for n, f in (results.get("fairness") or {}).items()]
        xs = range(len(latency))
        width = 0.4
        ax2.bar([x - width / 2 for x in xs], [lat["p50_ms"] or 0 for _, lat in latency], width, label="p50")
        ax2.bar([x + width / 2 for x in xs], [lat["p99_ms"] or 0 for _, lat in latency], width, label="p99")
        ax2.axhline(TARGETS["propagation_p50_ms"], color="C0", ls=":", lw=1, label="p50 target")
        ax2.axhline(TARGETS["propagation_p99_ms"], color="C1", ls=":", lw=1, label="p99 target")
        ax2.axhline(TARGETS["fairness_p99_ms"], color="C3", ls="--", lw=1, label="fairness p99 target")
        ax2.set_yscale("log")
        ax2.set_xticks(list(xs), [n for n, _ in latency], rotation=30, ha="right", fontsize=8)
        ax2.set_ylabel("propagation latency (ms, log)")
        ax2.set_title("Commit → Agent double latency (fairness: during a flood)")
        ax2.legend(fontsize=7)
        save(fig, "bus.png")

    points = _get(results, "growth", "points") or []
    if points:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        rows = [p["history_rows"] for p in points]
        for name in ("embedded_1", "rabbitmq_1"):
            if name not in points[0]:
                continue
            ax1.plot(rows, [p[name]["burst"]["events_per_s"] for p in points], marker="o", label=name)
            ax2.plot(rows, [p[name]["latency"]["p50_ms"] for p in points], marker="o", label=f"{name} p50")
            ax2.plot(rows, [p[name]["latency"]["p99_ms"] for p in points], marker="s", ls="--", label=f"{name} p99")
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_xlabel("delivered outbox rows present")
            ax.legend(fontsize=8)
        ax1.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax1.set_ylabel("events/s")
        ax1.set_title("Bus throughput vs outbox history")
        ax2.set_ylabel("ms")
        ax2.set_title("Propagation latency vs outbox history")
        save(fig, "growth.png")
    return written


def _api_table(results: dict) -> list[str]:
    runs = _get(results, "api", "runs") or {}
    if not runs:
        return ["Not measured in this run.", ""]
    ceiling = {"get": _get(runs, "ceiling_get", "ok_rps"), "put": _get(runs, "ceiling_put", "ok_rps")}
    lines = ["| endpoint | 2xx req/s | share of bare DRF | p50 ms | p90 ms | p99 ms | non-2xx | socket errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, run in runs.items():
        verb = run["method"].lower()
        share = ratio(run["ok_rps"], ceiling.get(verb))
        lines.append(f"| `{run['method']} {run['path']}` ({name}) | {_fmt(run['ok_rps'])} | "
                     f"{_fmt(share * 100 if share else None, 0, ' %')} | {_fmt(run['p50_ms'], 2)} | "
                     f"{_fmt(run['p90_ms'], 2)} | {_fmt(run['p99_ms'], 2)} | {run['non2xx']} | "
                     f"{run['socket_errors']} |")
    return [*lines, ""]


def _statements(results: dict) -> list[str]:
    statements = _get(results, "api", "statements") or {}
    if not statements:
        return []
    lines = ["Database statements per request in the steady state (counted in-process with Django's "
             "CaptureQueriesContext, BEGIN/COMMIT included; the token's last-use write, at most once per 5 minutes "
             "per token, excluded). Round trips add Django's per-request health check (`CONN_HEALTH_CHECKS`, a "
             "`SELECT 1` before the first ORM query of a request; the service's first statement, "
             "`project.rawsql.fetchone`, is the check itself) and count the waits for the server, so statements sent "
             "together in a pipeline (`project.rawsql.pipeline`, PostgreSQL) count once per read and once at its end "
             "(bench/queries.py):", "",
             "| request | statements | + health check | round trips | which |", "| --- | ---: | ---: | ---: | --- |"]
    for name, row in statements.items():
        which = ", ".join(f"`{q.split(' ', 1)[0]}`" for q in row["statements"])
        lines.append(f"| {name} | {row['count']} | {row.get('health_checks', '–')} | "
                     f"{row.get('round_trips', '–')} | {which} |")
    return [*lines, ""]


def _conditions_table(results: dict) -> list[str]:
    cond = _get(results, "conditions", "conditions") or {}
    if not cond:
        return ["Not measured in this run.", ""]
    lines = ["| Agent double | design | 2xx req/s | non-2xx | p50 ms | p99 ms | max ms | completed |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for condition in [c for c in CONDITIONS if c in cond]:
        runs = cond[condition]
        for key, label in (("service_put", "this service (outbox)"), ("sync_put", "seed 000 synchronous")):
            run = runs[key]
            lines.append(f"| {condition} | {label} | {_fmt(run['ok_rps'])} | {run['non2xx']} | "
                         f"{_fmt(run['p50_ms'], 2)} | {_fmt(run['p99_ms'], 2)} | {_fmt(run['max_ms'], 0)} | "
                         f"{run['requests']} |")
    return [*lines, ""]


def _bus_table(results: dict) -> list[str]:
    bus = results.get("bus") or {}
    raw = results.get("raw") or {}
    if not (bus or raw):
        return ["Not measured in this run.", ""]
    lines = ["| path | consumers | partitions | events/s | ÷ 1 consumer | ÷ ceiling | relay published /s | "
             "delivered / committed | drain s | p50 ms | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in matrix_rows(results):
        m = bus[row["name"]]
        b, lat = m.get("burst") or {}, m.get("latency") or {}
        balanced = " (partitions not yet shared fairly)" if row["balanced"] is False else ""
        lines.append(f"| {row['name']}{balanced} | {row['consumers']} | {_fmt(row['partitions'])} | "
                     f"{_fmt(row['events_per_s'])} | {_fmt(row['over_one'], 2)} | {_fmt(row['over_ceiling'], 2)} | "
                     f"{_fmt(b.get('relay_events_per_s'))} | "
                     f"{b.get('delivered', '–')} / {b.get('events', '–')} | {_fmt(b.get('drain_s'), 2)} | "
                     f"{_fmt(lat.get('p50_ms'))} | {_fmt(lat.get('p99_ms'))} |")
    if "pika" in raw:
        p = raw["pika"]
        lines.append(f"| raw pika (publish with confirms → consume+ack, 2 processes, prefetch {p.get('prefetch')}) | "
                     f"– | 1 | {_fmt(p['rate'])} | – | – | {_fmt(p.get('publish_rate'))} | {p['consumed']} / "
                     f"{p['messages']} | – | – | – |")
    if "http" in raw:
        h = raw["http"]
        lines.append(f"| raw HTTP, sequential (one urllib3 pool, the Agent client's library) | – | – | "
                     f"{_fmt(h['rate'])} | – | – | – | "
                     f"{h['requests']} / {h['requests']} | – | {_fmt(h.get('p50_ms'), 2)} | "
                     f"{_fmt(h.get('p99_ms'), 2)} |")
    for consumers, h in (raw.get("http_concurrent_by_consumers") or {}).items():
        lines.append(f"| raw HTTP, {h['processes']} process(es) × {h['threads']} in flight (= {consumers} "
                     f"consumer(s)' concurrency) | – | – | {_fmt(h['rate'])} | – | – | – | {h['requests']} / "
                     f"{h['requests']} | – | {_fmt(h.get('p50_ms'), 2)} | {_fmt(h.get('p99_ms'), 2)} |")
    return [*lines, ""]


CPU_COLUMNS = ("consumers", "agent", "postgres", "rabbitmq", "relay", "bench", "other", "machine")


def _cpu_table(results: dict) -> list[str]:
    """CPU ms per event of each process during a burst, beside the raw HTTP client's per call."""
    rows = [(name, m["cpu_ms_per_event"]) for name, m in (results.get("bus") or {}).items()
            if m.get("cpu_ms_per_event")]
    raw = (results.get("raw") or {}).get("http_concurrent_by_consumers") or {}
    rows += [(f"raw HTTP, {h['processes']} × {h['threads']} in flight (per call)",
              {"consumers": h["cpu_ms_per_call"]["client"], "agent": h["cpu_ms_per_call"].get("agent"),
               "machine": h["cpu_ms_per_call"]["machine"]})
             for h in raw.values() if h.get("cpu_ms_per_call")]
    if not rows:
        return []
    lines = ["CPU milliseconds per event (per call for raw HTTP) of each process over the burst, from /proc "
             "(`bench/cpu.py`): `consumers` is the consumer processes (for raw HTTP, its client processes), "
             "`bench` the process that commits the burst and waits for it, `other` what the machine spent beyond "
             "the named processes, `machine` all of it. The machine's cores ÷ `machine` bounds the rate.", "",
             "| path | " + " | ".join(CPU_COLUMNS) + " |", "| --- |" + " ---: |" * len(CPU_COLUMNS)]
    for name, cpu in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(cpu.get(c), 2) for c in CPU_COLUMNS) + " |")
    return [*lines, ""]


def _bus_settings(results: dict) -> list[str]:
    b = results.get("bus_settings")
    if not b:
        return []
    reads = ("the code reads it" if b.get("code_defines_BUS_CONSUMER_CONCURRENCY")
             else "the code does not read it yet: its consumer runs BUS_CONSUMER_CONNECTIONS "
                  f"= {b.get('BUS_CONSUMER_CONNECTIONS')} loops per process, the figure used for the ceiling")
    return [f"Bus processes ran with `BUS_CONSUMER_CONCURRENCY={b['BUS_CONSUMER_CONCURRENCY']}` "
            f"(from {b.get('source', '–')}; "
            f"{reads}), `AMQP_PREFETCH={b.get('AMQP_PREFETCH')}`, `AMQP_PARTITIONS` as in each row (default "
            f"{b.get('AMQP_PARTITIONS')}). Each row is a fresh relay and consumers; with several consumers a "
            "trickle of events runs first until the partitions are shared fairly (the consumers hand one over "
            "every few seconds). Ceiling = min(raw pika, raw HTTP at the same number of calls in flight) on "
            "RabbitMQ, raw HTTP at that concurrency on the embedded bus. `relay published /s` = the burst ÷ "
            "(the relay's mark of its last batch, `published_at`, − commit): when it is close to `events/s`, the "
            "relay, not the consumers, sets the pace (raw pika's row shows pika's publish rate there).", ""]


def _queries(results: dict) -> list[str]:
    q = results.get("queries_per_event") or {}
    lines = []
    for name in ("embedded", "rabbitmq"):
        m = q.get(name)
        if not m:
            continue
        kinds = ", ".join(f"`{k}` ×{v}" for k, v in (m.get("statements") or {}).items())
        idle = ", ".join(f"{k} {v}" for k, v in (m.get("idle_statements_same_window") or {}).items())
        lines.append(f"- {name}: **{_fmt(m.get('per_event'))} statements per event** "
                     f"({', '.join(f'{k} {v}' for k, v in (m.get('per_event_by_process') or {}).items())}) over "
                     f"{m.get('events')} events of distinct users committed together ({m.get('delivered')} "
                     f"delivered in {m.get('window_s')} s; idle statements in a window as long, after: {idle}). "
                     f"Sent: {kinds}.")
    inproc = q.get("rabbitmq_in_process")
    if inproc:
        lines.append(f"- rabbitmq, in-process cross-check (`bench.bus.queries_per_event_batch`: the consumer's "
                     f"run delivery and batch settle on one thread, bus processes stopped): {inproc.get('per_event')} "
                     f"per event over {inproc.get('events')} events ({inproc.get('statements')} statements).")
    if not lines:
        return []
    return ["Database statements the bus processes sent while delivering one batch (`bench/statements.py`: the "
            "real `manage.py consume`/`relay`, every connection in every thread, BEGIN/COMMIT included), ÷ the "
            "batch:", "", *lines, ""]


def _fairness_table(results: dict) -> list[str]:
    fairness = results.get("fairness") or {}
    if not fairness:
        return ["Not measured in this run.", ""]
    lines = ["| bus | flood events queued | refused | allergy changes | rate /s | p50 ms | p99 ms | max ms | "
             "flood drained in s | flood's Agent calls |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, f in fairness.items():
        flood, lat, drain = f.get("flood") or {}, f.get("latency") or {}, f.get("flood_drain") or {}
        refused = sum((flood.get("refused") or {}).values())
        drained = (_fmt(drain.get("drain_s"), 2) if drain.get("drained")
                   else f"not in the cap ({drain.get('left')} left)")
        lines.append(f"| {name} | {_fmt(flood.get('events_queued'))} | {refused} | {lat.get('n', '–')} | "
                     f"{lat.get('rate_per_s', '–')} | {_fmt(lat.get('p50_ms'))} | {_fmt(lat.get('p99_ms'))} | "
                     f"{_fmt(lat.get('max_ms'))} | {drained} | {_fmt(f.get('flood_agent_calls'))} |")
    return [*lines, ""]


def _growth_table(results: dict) -> list[str]:
    points = _get(results, "growth", "points") or []
    if not points:
        return ["Not measured in this run.", ""]
    lines = ["| users | outbox rows | insert s, vacuum s | scheduled prune: rows, s | path | events/s | ÷ 1k | "
             "p50 ms | ÷ 1k | p99 ms | ÷ 1k |",
             "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by_point = {p["users"]: p for p in points}
    for g in growth_ratios(results):
        p = by_point[g["users"]]
        prune = p.get("prune") or {}
        lines.append(f"| {p['users']:,} | {_fmt(prune.get('rows_after', p['history_rows']))} | {p['insert_s']}, "
                     f"{_fmt(p.get('vacuum_s'))} | {_fmt(prune.get('deleted'))}, {_fmt(prune.get('prune_s'), 2)} | "
                     f"{g['path']} | "
                     f"{_fmt(g['events_per_s'])} | {_fmt(g['rate_ratio'], 2)} | {_fmt(g['p50_ms'])} | "
                     f"{_fmt(g['p50_ratio'], 2)} | {_fmt(g['p99_ms'])} | {_fmt(g['p99_ratio'], 2)} |")
    return [*lines, ""]


def markdown(results: dict, images: list[str], analysis: str) -> str:
    meta = results.get("meta", {})
    api = results.get("api") or {}
    cond = results.get("conditions") or {}
    load_api = api.get("load") or {}
    load_sync = cond.get("load") or {}
    bus_any = next((m for m in (results.get("bus") or {}).values() if m.get("latency")), None)
    rabbit = (f"at {meta['rabbitmq_at']}" if meta.get("rabbitmq_at") else "yes") if meta.get("rabbitmq") else "no"
    dirty = " (working tree had uncommitted changes)" if meta.get("git_dirty") else ""
    quick = "; QUICK profile (not for conclusions)" if meta.get("quick") else ""
    paced = ""
    if bus_any:
        lat = bus_any["latency"]
        paced = f"one event every {1000 / lat['rate_per_s']:.0f} ms, {lat.get('events', '–')} events"
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (bench/run.py); every figure below is also in "
        "[benchmarks.json](benchmarks.json). Numbers are ratios taken in one run on one machine, "
        "never timed assertions in tests.",
        "",
        "## Run",
        "",
        f"- Started {meta.get('started_at')}, took {meta.get('duration_s')} s; git {meta.get('git')}{dirty}; "
        f"Python {meta.get('python')}; {meta.get('nproc')} cores; database {meta.get('database')}; "
        f"RabbitMQ {rabbit}{quick}.",
        f"- Machine load (shared with other engineers' test runs): before `{meta.get('uptime_before')}`, "
        f"after `{meta.get('uptime_after')}`.",
        f"- API under gunicorn, {meta.get('api_workers')} sync workers, `bench.settings` (= `project.settings` + "
        "the bench URLconf), PostgreSQL, `THROTTLE_RATES=off`, production logging; tokens from "
        f"{meta.get('tokens_from')}.",
        f"- Load: `wrk` in its own process, {load_api.get('threads')} threads, {load_api.get('connections')} "
        f"connections. API table: {api.get('rounds')} interleaved rounds (ceiling, ours, peer, ..., then again) of "
        f"{load_api.get('duration_s')} s per endpoint after one {load_api.get('warmup_s')} s warm-up; Agent "
        f"conditions: {cond.get('rounds')} rounds of {load_sync.get('duration_s')} s per design and condition "
        f"after a {load_sync.get('warmup_s')} s warm-up. Throughput totals all rounds; p50/p90/p99 are the median "
        "round's (wrk's own histogram per run). Requests rotate over 32 users' tokens; PUT alternates two bodies.",
        "- Bus: each event is a real allergy change (`allergies.services.allergy_profile_replace`: one outbox row, "
        "one user). Throughput = events committed in one transaction ÷ (the double's last request − commit). "
        f"Latency = the double's request-log `timestamp` − the producer's commit time, paced at {paced}."
        if bus_any else "- Bus: not measured.",
        *[f"- Note: {n}" for n in results.get("notes", [])],
        "",
        "## Targets",
        "",
        "| target | limit | measured | verdict | detail |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for row in evaluate(results):
        out.append(f"| {row['target']} | {row['limit']} | {_fmt(row['value'], 2)} | **{row['verdict']}** | "
                   f"{row['detail']} |")
    out += ["", "## Analysis", "", analysis.strip() or "(none yet)", ""]
    out += ["## API vs the bare DRF ceiling", "",
            "Bus processes stopped, so the API alone is measured. `ceiling` = a DRF `APIView` with no authentication "
            "and no database (PUT parses and echoes the body); `ceiling_auth` adds only the project's token "
            "authentication (diagnostic); `peer` = the idiomatic DRF version of the same GET/PUT "
            "(`rest_framework.authtoken` TokenAuthentication, a ModelSerializer, a generic RetrieveUpdateAPIView; "
            "bench/views.py `PeerAllergyProfileView`), same server, database and users, its own tokens; "
            "`baseline_*` = the commit named in the targets, exported and served by its own gunicorn with the same "
            "settings, database and tokens.", "", *_api_table(results), *_statements(results)]
    out += ["## The Agent's health seen from PUT /api/allergies/", "",
            f"Bus running ({cond.get('bus', '–')}), purged between conditions. The seed-000 design "
            "(bench/views.py `SyncAllergiesView`) saves locally and then calls the Agent in the request: 3 tries, "
            "1 s then 2 s sleeps, 10 s timeout. It runs on its own gunicorn with the same settings and worker "
            "count, so its stuck workers cannot starve the service's PUTs. `slow` = double "
            "`POST /fault {\"latency_ms\": 200}`, `down` = double `POST /down` (connections refused; the "
            "synchronous design gets a 12 s window there so that some requests complete at all). wrk only "
            "counts requests that completed inside the window.", "",
            *_conditions_table(results)]
    out += ["## Bus", "", *_bus_settings(results), *_bus_table(results), *_cpu_table(results), *_queries(results)]
    out += ["## Fairness", "",
            "One user's preference updates (`identity.services.user_preferences_update`, committed 200 per "
            "transaction) queued with the bus stopped; then the bus (1 consumer) started and other users' allergy "
            "changes made at the paced rate; their propagation latency while the flood is worked off, the "
            "flood's drain time from the bus's start, and how many Agent calls the flood cost (coalescing shows "
            "there).", "", *_fairness_table(results)]
    span_days = (_get(results, "growth", "span_s") or 0) / 86400
    out += ["## Growth of the outbox", "",
            f"Delivered rows added ({_get(results, 'growth', 'rows_per_user') or 3} per simulated user: registered, "
            "email, allergies; on PostgreSQL one `INSERT … SELECT generate_series`, elsewhere `bulk_create`), their "
            f"delivery times spread evenly over {span_days:.2f} days (the retention window plus one prune interval: "
            "production's steady state under the scheduled prune) and `VACUUM (ANALYZE)` (what autovacuum would "
            "have done long before; without it the next measurement measures the bulk insert's aftermath); then "
            "the scheduled prune itself "
            "(`agent_bridge.outbox.outbox_prune`, what the daemons and `manage.py prune_outbox` run, timed), then "
            "the bus measured again (1 consumer, a smaller burst and sample), ratios to the smallest size.", "",
            *_growth_table(results)]
    if images:
        out += ["## Plots", ""] + [f"![{name}](bench/{name})" for name in images] + [""]
    return "\n".join(out)


def write(results: dict, out: Path) -> None:
    images = plots(results, out / "bench")
    analysis_file = Path(__file__).with_name("ANALYSIS.md")
    analysis = analysis_file.read_text() if analysis_file.exists() else ""
    (out / "benchmarks.md").write_text(markdown(results, images, analysis))
