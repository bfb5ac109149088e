"""Start-up with several workers on an empty database. (A crash in the middle of writes, kill
-9 of the whole server, is in test_webhooks_server.py: it checks the orders and their events.)"""

from pathlib import Path

import pytest

from conftest import BACKENDS, empty_database, report
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
