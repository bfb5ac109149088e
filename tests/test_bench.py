"""The benchmark's reading of wrk's output and of the host's steal time, and how it compares
two rows (the load runs themselves are `make bench`)."""

from pathlib import Path

import pytest

from bench.run import Result, beside, core_times, parse_wrk, relative_rate, stolen_pct

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/order
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    29.10ms   12.00ms 464.00ms   80.00%
    Req/Sec     1.10k   100.00     1.20k    70.00%
  Latency Distribution
     50%   29.10ms
     75%   35.00ms
     90%   50.00ms
     99%   92.10ms
  10900 requests in 10.00s, 5.00MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1090.12
Transfer/sec:    500.00KB
"""


def test_parse_wrk_reads_rate_latencies_and_errors() -> None:
    result = parse_wrk("GET /order/{id}", WRK_OUTPUT)
    assert result.rps == 1090.12
    assert result.p50_ms == 29.1
    assert result.p99_ms == 92.1
    assert result.max_ms == 464.0
    assert result.errors == 6


def test_parse_wrk_understands_every_unit() -> None:
    output = WRK_OUTPUT.replace("464.00ms", "1.20s").replace("29.10ms\n", "850.00us\n")
    result = parse_wrk("x", output.replace("Non-2xx or 3xx responses: 3\n", ""))
    assert result.max_ms == 1200
    assert result.p50_ms == 0.85
    assert result.errors == 3


def test_stolen_share_is_steal_over_all_the_time_between_two_readings() -> None:
    before = [100, 0, 50, 800, 0, 0, 0, 50]
    after = [150, 0, 60, 830, 0, 0, 0, 60]  # 100 jiffies later, 10 of them stolen
    assert stolen_pct(before, after) == 10.0
    assert stolen_pct(before, before) == 0.0
    assert stolen_pct(None, after) is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux only")
def test_core_times_reads_eight_counters_for_the_machine_and_for_a_core() -> None:
    machine, first_core = core_times(""), core_times("0")
    assert machine is not None
    assert first_core is not None
    assert len(machine) == len(first_core) == 8
    assert sum(machine) >= sum(first_core) > 0
    assert core_times("999") is None


def test_a_rows_rate_beside_its_baseline_cancels_a_drift_across_reversed_rounds() -> None:
    """Round 1 runs A then B, round 2 B then A, and each later run is 10 % slower (the
    database grows): B's true rate is 0.9 of A's. Their fastest runs would say 0.81."""
    slowed = [1.0, 0.9, 0.81, 0.729]  # the four runs' places, in order
    a = [Result("A", 1000 * slowed[0], 1, 1, 1, 0), Result("A", 1000 * slowed[3], 1, 1, 1, 0)]
    b = [Result("B", 900 * slowed[1], 1, 1, 1, 0), Result("B", 900 * slowed[2], 1, 1, 1, 0)]
    assert max(r.rps for r in b) / max(r.rps for r in a) == pytest.approx(0.81)
    assert relative_rate(b, a) == pytest.approx(0.9)


def test_a_row_beside_its_baseline_shows_the_mean_and_each_rounds_ratio() -> None:
    base = [Result("A", 1000, 1, 1, 1, 0), Result("A", 1000, 1, 1, 1, 0)]
    row = [Result("B", 900, 1, 1, 1, 0), Result("B", 1000, 1, 1, 1, 0)]
    relative, shown = beside(row, base)
    assert relative == pytest.approx(0.9**0.5)
    assert shown == "0.95 x: 0.90, 1.00"
