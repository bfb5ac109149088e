"""GET /metrics from the real 4-worker server: whichever worker answers a scrape, it reports
the requests of all of them."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import backend_of, report
from tests.system.conftest import Server


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The tests of this module share one server (see shared_server)."""
    return shared_server


def samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.request("GET", "/metrics")  # a new connection: any worker may answer
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def count(found: dict, route: str, method: str, status: str) -> float:
    key = ("http_requests_total", (("method", method), ("route", route), ("status", status)))
    return found.get(key, 0.0)


def test_every_worker_reports_the_requests_of_all_of_them(server: Server) -> None:
    admin = server.login("admin@example.com")
    before = count(samples(server), "/webhooks/{webhook_id}", "GET", "404")
    for webhook_id in range(1001, 1041):  # each on a new connection: spread over the workers
        response = server.request("GET", f"/webhooks/{webhook_id}", headers=admin)
        assert response.status_code == 404
    scrapes = [samples(server) for _ in range(8)]
    assert {count(s, "/webhooks/{webhook_id}", "GET", "404") for s in scrapes} == {before + 40}
    # Each scrape counts the ones before it, whichever worker answered each.
    seen = [count(s, "/metrics", "GET", "200") for s in scrapes]
    assert seen == [seen[0] + n for n in range(8)]
    report(
        f"{backend_of(server.database_url)}: /metrics from 4 workers: 8 scrapes, each "
        "counting all 40 requests spread over the workers"
    )
