from fastapi.testclient import TestClient

from main import create_app
from settings import Settings


def test_health_reports_database_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_is_503_when_database_unreachable(tmp_path) -> None:
    # A directory cannot be opened as a SQLite database: the connection fails.
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path}",
        secret_key="x" * 32,
        migrate_on_startup=False,
    )
    with TestClient(create_app(settings)) as client:
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
