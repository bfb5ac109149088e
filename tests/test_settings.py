import pytest
from pydantic import ValidationError

from settings import Settings, dev_secret_key


def test_development_generates_a_key_once_and_reuses_it(tmp_path) -> None:
    path = tmp_path / ".secret_key"
    first = dev_secret_key(path)
    assert len(first) >= 32
    assert dev_secret_key(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


# What production needs besides the key: somewhere to send password reset emails.
PRODUCTION_MAIL = {
    "smtp_host": "smtp.example.com",
    "email_from": "Shop <no-reply@example.com>",
    "password_reset_url": "https://shop.example.com/reset?token={token}",
}


def test_production_refuses_a_missing_or_short_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key="", **PRODUCTION_MAIL)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key="x" * 31, **PRODUCTION_MAIL)
    settings = Settings(
        _env_file=None, environment="production", secret_key="x" * 32, **PRODUCTION_MAIL
    )
    assert settings.secret_key == "x" * 32


@pytest.mark.parametrize("missing", sorted(PRODUCTION_MAIL))
def test_production_refuses_to_start_without_mail_settings(missing: str) -> None:
    given = {name: value for name, value in PRODUCTION_MAIL.items() if name != missing}
    with pytest.raises(ValidationError, match=missing.upper()):
        Settings(_env_file=None, environment="production", secret_key="x" * 32, **given)


def test_development_needs_no_mail_settings() -> None:
    settings = Settings(_env_file=None, secret_key="k" * 32)
    assert settings.smtp_host is None
    assert "{token}" in settings.reset_link_template
    assert settings.sender


@pytest.mark.parametrize(
    "url", ["https://shop.example.com/reset", "ftp://shop.example.com/{token}", "{token}"]
)
def test_the_reset_link_must_be_a_web_address_with_the_token(url: str) -> None:
    with pytest.raises(ValidationError, match="PASSWORD_RESET_URL"):
        Settings(_env_file=None, secret_key="k" * 32, password_reset_url=url)


def test_the_smtp_password_never_shows_in_a_repr() -> None:
    settings = Settings(_env_file=None, secret_key="k" * 32, smtp_password="hunter2-smtp")
    assert "hunter2-smtp" not in repr(settings)
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2-smtp"


def test_cors_origins_are_read_as_a_comma_separated_list(monkeypatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "http://a.example.com, http://b.example.com")
    settings = Settings(_env_file=None, secret_key="k" * 32)
    assert settings.cors_origins == ["http://a.example.com", "http://b.example.com"]


def test_cors_header_is_sent_for_a_configured_origin(settings) -> None:
    from asgi_client import TestClient
    from main import create_app

    app = create_app(settings.model_copy(update={"cors_origins": ["http://ui.example.com"]}))
    with TestClient(app) as client:
        response = client.get("/health", headers={"Origin": "http://ui.example.com"})
    assert response.headers["access-control-allow-origin"] == "http://ui.example.com"
