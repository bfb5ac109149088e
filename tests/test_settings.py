import pytest
from pydantic import ValidationError

from settings import Settings, dev_secret_key


def test_development_generates_a_key_once_and_reuses_it(tmp_path) -> None:
    path = tmp_path / ".secret_key"
    first = dev_secret_key(path)
    assert len(first) >= 32
    assert dev_secret_key(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_production_refuses_a_missing_or_short_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key="")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key="x" * 31)
    settings = Settings(_env_file=None, environment="production", secret_key="x" * 32)
    assert settings.secret_key == "x" * 32


def test_cors_origins_are_read_as_a_comma_separated_list(monkeypatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "http://a.example.com, http://b.example.com")
    settings = Settings(_env_file=None, secret_key="k" * 32)
    assert settings.cors_origins == ["http://a.example.com", "http://b.example.com"]


def test_cors_header_is_sent_for_a_configured_origin(settings) -> None:
    from fastapi.testclient import TestClient

    from main import create_app

    app = create_app(settings.model_copy(update={"cors_origins": ["http://ui.example.com"]}))
    with TestClient(app) as client:
        response = client.get("/health", headers={"Origin": "http://ui.example.com"})
    assert response.headers["access-control-allow-origin"] == "http://ui.example.com"
