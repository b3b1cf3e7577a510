"""bench.run.carry_over: what a partial run (--api-only) keeps of the previous JSON (no servers)."""
import json

from bench.run import carry_over


def test_sections_of_phases_not_run_are_kept_with_the_run_they_come_from(tmp_path):
    previous = {"meta": {"started_at": "T1", "git": "aaa"}, "api": {"old": True}, "bus": {"b": 1},
                "queries_per_event": {"q": 1}, "raw": {"r": 1},
                "carried_over": {"raw": {"started_at": "T0", "git": "zzz"}}}
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(previous))
    results = {"notes": [], "meta": {"started_at": "T2"}, "api": {"new": True}}

    carry_over(results, path, ran=["api"])

    assert results["api"] == {"new": True}
    assert results["bus"] == {"b": 1} and results["queries_per_event"] == {"q": 1} and results["raw"] == {"r": 1}
    assert results["carried_over"]["bus"]["started_at"] == "T1"
    assert results["carried_over"]["raw"] == {"started_at": "T0", "git": "zzz"}  # its own origin, not T1
    assert "api" not in results["carried_over"] and len(results["notes"]) == 3


def test_a_full_run_or_no_previous_json_carries_nothing(tmp_path):
    results = {"notes": [], "api": {}}
    carry_over(results, tmp_path / "missing.json", ran=["api"])
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps({"meta": {}, "bus": {"b": 1}}))
    carry_over(results, path, ran=["api", "conditions", "raw", "bus", "growth"])
    assert "carried_over" not in results and "bus" not in results
