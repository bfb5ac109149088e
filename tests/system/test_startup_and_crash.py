"""Start-up with several workers on an empty database. (A crash in the middle of writes, kill
-9 of the whole server, is in test_webhooks_server.py: it checks the orders and their events.)"""

from conftest import backend_of, report
from database import current_revision, head_revision, make_engine
from tests.system.conftest import WORKERS, Server


def test_four_workers_migrate_an_empty_database_once(shared_server: Server) -> None:
    """The shared server's workers started together on an empty database (see shared_server):
    one migrated it, the others found it at head."""
    server = shared_server
    assert server.request("GET", "/health").json() == {"status": "ok", "database": "ok"}
    log = server.log_path.read_text()
    assert log.count("Database schema upgraded to revision") == 1, log
    assert log.count("Application startup complete") == WORKERS
    assert server.problems() == []
    engine = make_engine(server.database_url, pool_size=1)
    assert current_revision(engine) == head_revision(server.database_url)
    engine.dispose()
    report(
        f"{backend_of(server.database_url)}: 4 workers started on an empty database; migrated once"
    )
