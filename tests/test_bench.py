"""The benchmark's reading of wrk's output (the load runs themselves are `make bench`)."""

from bench.run import parse_wrk

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
