from __future__ import annotations

import pytest

from asfe3d.benchmark import CASES, Case, format_table, main, run_case


def test_run_case_reports_params_time_and_memory():
    res = run_case(Case("efficient", 2, "tiny", (32, 32)), device="cpu", repeats=2, threads=1)
    assert res["params"] > 0
    assert len(res["times_s"]) == 2 and res["median_s"] > 0
    assert res["peak_mib"] > 0 and res["cpu_s"] >= 0


def test_table_has_one_row_per_case_and_marks_skips():
    rows = [
        {"case": CASES[0], "device": "cpu", "params": 1000, "median_s": 0.01, "times_s": [0.01], "cpu_s": 0.02,
         "peak_mib": 400.0, "baseline_mib": 350.0},
        {"case": Case("paper", 3, "volume 128^3", (128, 128, 128), skip="too big"), "device": "cpu", "skip": "too big"},
    ]
    table = format_table(rows).splitlines()
    assert len(table) == 4
    assert "0.010 s" in table[2] and "400 (baseline 350)" in table[2]
    assert "skipped: too big" in table[3]
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_bad_option_exits_with_usage_error():
    with pytest.raises(SystemExit) as err:
        main(["--preset", "huge"])
    assert err.value.code == 2


def test_acceptance_table_takes_the_best_thread_count_and_flags_misses():
    from asfe3d.benchmark import acceptance

    vol = Case("efficient", 3, "volume 128^3", (128, 128, 128))

    def row(threads, median, params=132_000):
        return {"case": vol, "device": "cpu", "threads": threads, "params": params, "median_s": median,
                "times_s": [median], "cpu_s": median, "peak_mib": 700.0}

    text = acceptance([row(1, 0.9), row(2, 2.5)])
    assert "| efficient 3D, one 128^3 volume <= 1.8 s | 0.90 s (1 threads) | yes |" in text
    assert "| efficient 3D parameters <= 2 M | 0.132 M | yes |" in text
    assert "brain <= 10 s | not run |" in text
    assert "| NO |" in acceptance([row(1, 2.5, params=3_000_000)])


def test_pipeline_table_rows_and_bad_case():
    from asfe3d.benchmark import PIPELINE_CASES, format_pipeline_table, pipeline_bars, run_pipeline_case

    row = {"case": "x (y)", "kind": "brain", "threads": 2, "steps": {"load": 0.2, "fuse": 2.0}, "wall_s": 6.0,
           "startup_s": 3.8, "peak_mib": 1500.0, "reference_s": 0.6, "ratio": 10.0}
    table = format_pipeline_table([row]).splitlines()
    assert len(table) == 3 and "| x (y) | 2 | 0.20 | nan |" in table[2] and "| 3.80 | 6.0 s |" in table[2]
    assert "| 10.0 |" in table[2]
    # the brain bar is 9 x the reference workload and 2048 MiB: 10 x misses it, 1500 MiB meets it
    bars = pipeline_bars([row]).splitlines()
    assert bars[2] == "| x | <= 6 s | <= 9 x | 10.0 x (6.0 s) | NO | <= 2048 | 1500 | yes |"
    assert "| yes |" in pipeline_bars([{**row, "kind": "petct", "ratio": 40.0, "peak_mib": 3100.0}]).split("\n")[2]
    with pytest.raises(KeyError):
        pipeline_bars([{**row, "kind": "nope"}])
    assert len(PIPELINE_CASES) == 2
    with pytest.raises(KeyError):
        run_pipeline_case("no such case")
