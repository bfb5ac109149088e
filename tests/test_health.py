from asgi_client import TestClient
from conftest import test_settings
from main import create_app


def test_health_reports_database_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_is_503_when_database_unreachable(tmp_path) -> None:
    # A directory cannot be opened as a SQLite database: the connection fails.
    with TestClient(create_app(test_settings(f"sqlite:///{tmp_path}"))) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["detail"] == "Database is unreachable"


def test_docs_and_openapi_are_served(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn." not in docs.text  # Swagger UI is served locally, so /docs works offline
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 200
    spec = client.get("/openapi.json").json()
    assert (
        spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"][
            "tokenUrl"
        ]
        == "/auth/login-form"
    )


def test_ready_when_the_schema_is_at_the_code_revision(client: TestClient) -> None:
    from database import code_revision

    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "schema_revision": code_revision(),
    }


def test_not_ready_before_the_schema_is_migrated(fresh_database_url: str) -> None:
    with TestClient(create_app(test_settings(fresh_database_url))) as client:
        assert client.get("/health").status_code == 200  # alive, but ...
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert "schema is at revision <none>" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
        from alembic import command

        from database import alembic_config

        command.upgrade(alembic_config(fresh_database_url), "0004")
        behind = client.get("/health/ready")
        assert behind.status_code == 503
        assert "revision 0004" in behind.json()["detail"]
        command.upgrade(alembic_config(fresh_database_url), "head")
        assert client.get("/health/ready").status_code == 200


def test_not_ready_when_the_database_is_unreachable(tmp_path) -> None:
    with TestClient(create_app(test_settings(f"sqlite:///{tmp_path}"))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["detail"] == "Database is unreachable"
