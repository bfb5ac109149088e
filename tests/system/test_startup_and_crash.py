"""Start-up with several workers on an empty database, and a crash in the middle of writes."""

import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import BACKENDS, backend_of, empty_database, report
from database import current_revision, head_revision, make_engine
from tests.system.conftest import Server


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_workers_migrate_an_empty_database_once(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        server = Server(url, tmp_path / "server.log").start()
        try:
            assert server.request("GET", "/health").json() == {"status": "ok", "database": "ok"}
        finally:
            server.stop()
        log = server.log_path.read_text()
        assert log.count("Database schema upgraded to revision") == 1, log
        assert log.count("Application startup complete") == 4
        assert server.problems() == []
        engine = make_engine(url, pool_size=1)
        assert current_revision(engine) == head_revision(url)
        engine.dispose()
    report(f"{backend}: 4 workers started on an empty database; migrated once")


def test_sigkill_mid_load_loses_no_acknowledged_order(server: Server) -> None:
    users = [server.signup(f"crash{i}@example.com") for i in range(4)]
    acknowledged: dict[int, dict] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def write_load(user: dict[str, str]) -> None:
        body = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]}
        while not stop.is_set():
            try:
                response = server.request("POST", "/order", json=body, headers=user)
            except Exception:  # the server is being killed under us
                continue
            if response.status_code == 201:
                with lock:
                    acknowledged[response.json()["id"]] = response.json()

    threads = [threading.Thread(target=write_load, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    time.sleep(2)
    server.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 10

    if server.database_url.startswith("sqlite"):
        engine = make_engine(server.database_url, pool_size=1)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        engine.dispose()

    server.start()
    admin = server.login("admin@example.com")
    for order_id, before in acknowledged.items():
        after = server.request("GET", f"/order/{order_id}", headers=admin)
        assert after.status_code == 200
        assert after.json() == before
    report(
        f"{backend_of(server.database_url)}: SIGKILL mid-load: "
        f"{len(acknowledged)} acknowledged orders, all intact after restart"
    )
