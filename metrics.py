"""Prometheus metrics, right across worker processes.

prometheus-client's multiprocess mode: each process writes its samples to files in one
directory and a scrape, answered by any worker, adds up the files of all of them. The
directory is PROMETHEUS_MULTIPROC_DIR when the deployment sets it (and then empties it at
each start); otherwise one of our own per server under .metrics/, named after the process
group that uvicorn's workers share with their supervisor, so a restart starts from zero.
Only counters and histograms are kept: their sums stay right when a worker exits.
"""

import os
import shutil
import tempfile
from functools import cache

from settings import BASE_DIR

_PREFIX = "orders-metrics-"


def _own_directory() -> str:
    # In the checkout, not in a world-writable temp directory another user could prepare.
    base = BASE_DIR / ".metrics"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
    except OSError:  # a read-only checkout: this process's own, private directory
        return tempfile.mkdtemp(prefix=_PREFIX)
    for stale in base.glob(f"{_PREFIX}*"):  # left by servers that have stopped
        try:
            os.killpg(int(stale.name.removeprefix(_PREFIX)), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):
            pass
    directory = base / f"{_PREFIX}{os.getpgid(0)}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return str(directory)


# Before prometheus_client is imported: it picks its storage once, at import.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_directory()

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

requests = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
latency = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, until its last byte",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
orders = Counter("orders_total", "Order changes committed", ["event"])  # created, cancelled, ...
failed_logins = Counter("auth_failed_logins_total", "Logins refused for wrong credentials")
throttled = Counter("rate_limited_total", "Requests refused by a rate limit (429)", ["route"])
webhook_deliveries = Counter(
    "webhook_deliveries_total",
    "Webhook delivery attempts by outcome (succeeded, retrying, failed)",
    ["outcome"],
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


@cache
def _request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    # A request's two series, looked up once: `labels()` checks and joins its values on every
    # call. As many as prometheus-client keeps anyway (methods, route templates, statuses).
    return requests.labels(method, route, status), latency.labels(method, route)


# The methods counted by name; any other is counted as "other". h11 accepts any token as a
# method, and a label value per made-up method would grow every worker's series (and its
# metrics file) without bound, at the request of anyone.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count an answered request and its duration, by method, route template and status."""
    if method not in METHODS:
        method = "other"
    counter, histogram = _request_series(method, route, status)
    counter.inc()
    histogram.observe(seconds)


def scrape() -> bytes:
    """Every process's samples, added up, in Prometheus's text format."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
