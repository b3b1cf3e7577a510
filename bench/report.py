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
    "bus1_share_of_raw": 0.80,
    "bus2_over_bus1": 1.6,
    "rabbit_p50_ms": 20.0,
    "rabbit_p99_ms": 100.0,
    "embedded_p99_ms": 250.0,
}


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

    pika = _get(results, "raw", "pika", "rate")
    http = _get(results, "raw", "http", "rate")
    floor = min(x for x in (pika, http) if x is not None) if (pika or http) else None
    bus = results.get("bus") or {}
    r1 = _get(bus, "rabbitmq_1", "burst", "events_per_s")
    r2 = _get(bus, "rabbitmq_2", "burst", "events_per_s")
    e1 = _get(bus, "embedded_1", "burst", "events_per_s")
    add("RabbitMQ bus, 1 consumer ÷ min(raw pika, raw HTTP)", ratio(r1, floor if pika else None),
        TARGETS["bus1_share_of_raw"], higher_is_better=True,
        detail=f"{_fmt(r1)} ÷ min({_fmt(pika)}, {_fmt(http)}) events/s")
    add("Embedded bus, 1 consumer ÷ raw HTTP", ratio(e1, http), TARGETS["bus1_share_of_raw"], higher_is_better=True,
        detail=f"{_fmt(e1)} ÷ {_fmt(http)} events/s (no broker on this path, so HTTP is its ceiling)")
    add("RabbitMQ bus, 2 consumers ÷ 1 consumer", ratio(r2, r1), TARGETS["bus2_over_bus1"], higher_is_better=True,
        detail=f"{_fmt(r2)} ÷ {_fmt(r1)} events/s")
    for name in ("rabbitmq_1", "rabbitmq_2"):
        add(f"Propagation p50, {name}", _get(bus, name, "latency", "p50_ms"), TARGETS["rabbit_p50_ms"],
            higher_is_better=False, detail="ms")
        add(f"Propagation p99, {name}", _get(bus, name, "latency", "p99_ms"), TARGETS["rabbit_p99_ms"],
            higher_is_better=False, detail="ms")
    add("Propagation p99, embedded_1", _get(bus, "embedded_1", "latency", "p99_ms"), TARGETS["embedded_p99_ms"],
        higher_is_better=False, detail="ms")
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
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
        labels = list(bus) + [f"raw {k}" for k in raw]
        values = [bus[k]["burst"]["events_per_s"] or 0 for k in bus] + [raw[k]["rate"] or 0 for k in raw]
        ax1.bar(labels, values, color=["#2a7"] * len(bus) + ["#888"] * len(raw))
        ax1.set_ylabel("events/s (commit → Agent double)")
        ax1.set_title("Bus throughput vs raw ceilings")
        ax1.set_xticks(range(len(labels)), [label.replace("whatif_", "what-if\n") for label in labels], rotation=30,
                       ha="right", fontsize=8)
        names = list(bus)
        xs = range(len(names))
        width = 0.4
        ax2.bar([x - width / 2 for x in xs], [bus[n]["latency"]["p50_ms"] or 0 for n in names], width, label="p50")
        ax2.bar([x + width / 2 for x in xs], [bus[n]["latency"]["p99_ms"] or 0 for n in names], width, label="p99")
        ax2.axhline(TARGETS["rabbit_p50_ms"], color="C0", ls=":", lw=1, label="RabbitMQ p50 target")
        ax2.axhline(TARGETS["rabbit_p99_ms"], color="C1", ls=":", lw=1, label="RabbitMQ p99 target")
        ax2.axhline(TARGETS["embedded_p99_ms"], color="C3", ls=":", lw=1, label="embedded p99 target")
        ax2.set_xticks(list(xs), [n.replace("whatif_", "what-if\n") for n in names], rotation=30, ha="right",
                       fontsize=8)
        ax2.set_ylabel("propagation latency (ms)")
        ax2.set_title("Commit → Agent double latency")
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
    lines = ["| path | events/s | delivered / committed | drain s | latency p50 ms | p90 ms | p99 ms | max ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in bus.items():
        b, lat = m["burst"], m["latency"]
        lines.append(f"| {name} | {_fmt(b['events_per_s'])} | {b['delivered']} / {b['events']} | "
                     f"{_fmt(b['drain_s'], 2)} | {_fmt(lat['p50_ms'])} | {_fmt(lat['p90_ms'])} | "
                     f"{_fmt(lat['p99_ms'])} | {_fmt(lat['max_ms'])} |")
    if "pika" in raw:
        p = raw["pika"]
        lines.append(f"| raw pika (publish with confirms → consume+ack, 2 processes) | {_fmt(p['rate'])} | "
                     f"{p['consumed']} / {p['messages']} | – | – | – | – | – |")
    if "http" in raw:
        h = raw["http"]
        lines.append(f"| raw HTTP (one requests.Session, sequential PATCH to the double) | {_fmt(h['rate'])} | "
                     f"{h['requests']} / {h['requests']} | – | {_fmt(h['p50_ms'], 2)} | – | – | – |")
    return [*lines, ""] if bus or raw else ["Not measured in this run.", ""]


def _queries(results: dict) -> list[str]:
    q = results.get("queries_per_event")
    if not q:
        return []
    e, r = q["embedded"], q["rabbitmq_handler"]
    return [f"Database statements per allergy event (counted in-process with Django's CaptureQueriesContext): "
            f"embedded consumer {e['claim']} to claim + {e['handle_and_settle']} to handle and settle; RabbitMQ "
            f"consumer {r['handle_and_settle']} to handle and settle: " + ", ".join(
                f"`{x.split(' ', 1)[0]}`" for x in r["statements"]) + ".", ""]


def _growth_table(results: dict) -> list[str]:
    points = _get(results, "growth", "points") or []
    if not points:
        return ["Not measured in this run.", ""]
    lines = ["| users | outbox rows | insert s | path | events/s | p50 ms | p99 ms |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for p in points:
        for name in ("embedded_1", "rabbitmq_1"):
            if name in p:
                m = p[name]
                lines.append(f"| {p['users']:,} | {p['history_rows']:,} | {p['insert_s']} | {name} | "
                             f"{_fmt(m['burst']['events_per_s'])} | {_fmt(m['latency']['p50_ms'])} | "
                             f"{_fmt(m['latency']['p99_ms'])} |")
    return [*lines, ""]


def markdown(results: dict, images: list[str], analysis: str) -> str:
    meta = results.get("meta", {})
    api = results.get("api") or {}
    cond = results.get("conditions") or {}
    load_api = api.get("load") or {}
    load_sync = cond.get("load") or {}
    bus_any = next(iter((results.get("bus") or {}).values()), None)
    rabbit = (f"at {meta['rabbitmq_at']}" if meta.get("rabbitmq_at") else "yes") if meta.get("rabbitmq") else "no"
    dirty = " (working tree had uncommitted changes)" if meta.get("git_dirty") else ""
    quick = "; QUICK profile (not for conclusions)" if meta.get("quick") else ""
    paced = ""
    if bus_any:
        lat = bus_any["latency"]
        paced = f"one event every {1000 / lat['rate_per_s']:.0f} ms, {lat['events']} events"
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
    out += ["## Bus", "", "`whatif_*` rows run bench-only variants of the service's code (see Analysis); "
            "every other row is the service as committed.", "", *_bus_table(results), *_queries(results)]
    out += ["## Growth of the outbox", "",
            f"Delivered rows added ({_get(results, 'growth', 'rows_per_user') or 3} per simulated user: registered, "
            "email, allergies; on PostgreSQL one `INSERT … SELECT generate_series`, elsewhere `bulk_create`), then "
            "the bus measured again with a smaller burst and sample, bus processes running as in production.", "",
            *_growth_table(results)]
    if images:
        out += ["## Plots", ""] + [f"![{name}](bench/{name})" for name in images] + [""]
    return "\n".join(out)


def write(results: dict, out: Path) -> None:
    images = plots(results, out / "bench")
    analysis_file = Path(__file__).with_name("ANALYSIS.md")
    analysis = analysis_file.read_text() if analysis_file.exists() else ""
    (out / "benchmarks.md").write_text(markdown(results, images, analysis))
