"""bench.cpu: CPU time per process over a window, from /proc."""
import subprocess
import sys
import time

from bench import cpu, report

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_the_meter_counts_a_process_that_started_inside_the_window_and_leaves_out_an_idle_one():
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy: list[int] = []
    try:
        with cpu.CpuMeter(lambda: {"busy": busy, "idle": [idle.pid]}) as meter:
            worker = subprocess.Popen([sys.executable, "-c", BUSY + "time.sleep(30)"])
            busy.append(worker.pid)
            deadline = time.monotonic() + 20
            while (cpu.process_seconds(worker.pid) or 0) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
        worker.kill()
    finally:
        idle.kill()
    assert meter.seconds["busy"] >= 0.25
    assert meter.seconds["idle"] < 0.1
    assert meter.machine_seconds >= meter.seconds["busy"] - 0.05  # /proc/stat ticks are coarse
    per = meter.per_unit_ms(10)
    assert per["busy"] == round(100 * meter.seconds["busy"], 3)
    assert per["other"] == round(100 * (meter.machine_seconds - meter.seconds["busy"] - meter.seconds["idle"]), 3)


def test_a_process_gone_before_the_end_counts_nothing_rather_than_failing():
    short = subprocess.Popen([sys.executable, "-c", "pass"])
    with cpu.CpuMeter(lambda: {"short": [short.pid]}) as meter:
        short.wait(10)
    assert meter.seconds["short"] == 0.0
    assert cpu.process_seconds(short.pid) is None


def test_no_units_gives_no_figures():
    with cpu.CpuMeter(lambda: {}) as meter:
        pass
    assert meter.per_unit_ms(0) == {}


def test_the_report_sets_each_burst_beside_the_raw_client_per_call():
    results = {
        "bus": {"rabbitmq_c1_p4": {"cpu_ms_per_event": {"consumers": 1.3, "agent": 0.6, "postgres": 0.4,
                                                        "rabbitmq": 0.3, "relay": 0.1, "bench": 0.05,
                                                        "other": 0.2, "machine": 2.95}},
                "embedded_1": {"burst": {}}},
        "raw": {"http_concurrent_by_consumers": {"1": {"processes": 1, "threads": 8, "cpu_ms_per_call": {
            "client": 0.9, "agent": 0.5, "machine": 1.5}}}},
    }
    lines = report._cpu_table(results)
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| ---")]
    assert table[0].startswith("| path | consumers | agent | postgres")
    assert table[1] == "| rabbitmq_c1_p4 | 1.30 | 0.60 | 0.40 | 0.30 | 0.10 | 0.05 | 0.20 | 2.95 |"
    assert table[2] == "| raw HTTP, 1 × 8 in flight (per call) | 0.90 | 0.50 | – | – | – | – | – | 1.50 |"
    assert len(table) == 3  # a burst without CPU figures has no row
    assert report._cpu_table({}) == []
