"""Configuration, read once from the environment and an optional `.env` file."""

import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BASE_DIR = Path(__file__).resolve().parent
DEV_SECRET_FILE = BASE_DIR / ".secret_key"
MIN_SECRET_BYTES = 32
# Swagger's page of the confirm route (the token rides in the query, which Swagger ignores).
DEV_RESET_URL = "http://127.0.0.1:8000/docs?token={token}#/auth/auth-confirm-password-reset"
DEV_SENDER = "Orders API <orders@localhost>"


class Environment(StrEnum):
    development = "development"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Environment = Environment.development
    database_url: str = f"sqlite:///{BASE_DIR / 'orders.db'}"
    secret_key: str = ""
    access_token_minutes: int = Field(default=30, gt=0)
    refresh_token_days: int = Field(default=7, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = []
    migrate_on_startup: bool = True
    login_max_failures: int = Field(default=5, gt=0)
    login_window_seconds: int = Field(default=15 * 60, gt=0)
    signup_max_per_hour: int = Field(default=20, gt=0)
    # argon2id; the defaults are OWASP's minimum (19 MiB, 2 passes, 1 lane).
    password_hash_memory_kib: int = Field(default=19 * 1024, ge=8)
    password_hash_time_cost: int = Field(default=2, ge=1)
    password_hash_parallelism: int = Field(default=1, ge=1)
    # Hashing is CPU-bound: more concurrent hashes than cores only add memory.
    password_hash_concurrency: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)), gt=0
    )
    db_pool_size: int = Field(default=10, gt=0)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    # Password reset by email. With no SMTP_HOST (development only) messages go to the log.
    password_reset_minutes: int = Field(default=30, gt=0)
    password_reset_max_per_hour: int = Field(default=5, gt=0)
    # Where the emailed link leads (your front end's page); `{token}` is replaced by the token.
    password_reset_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, gt=0, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10, gt=0)
    email_from: str | None = None
    # Order events and webhooks.
    webhook_retry_base_seconds: float = Field(default=10, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    # Production refuses webhook URLs that resolve to private, loopback or link-local
    # addresses unless this is set; development allows them.
    webhook_allow_private_urls: bool = False
    # Each worker delivers; false leaves it to `python manage.py deliver-webhooks`.
    webhook_deliver_in_app: bool = True
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # How long a process's hold on a webhook outlives its last attempt: the longest a killed
    # process's deliveries wait for another to take them over. Keep it above the longest
    # attempt (a 10 s send after a 5 s lookup), or two processes could send at once.
    webhook_lease_seconds: float = Field(default=30, gt=0)
    webhook_retention_days: int = Field(default=7, ge=1)
    # GET /metrics asks for `Authorization: Bearer <METRICS_TOKEN>` when this is set.
    metrics_token: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, data: dict) -> dict:
        origins = data.get("cors_origins") if isinstance(data, dict) else None
        if isinstance(origins, str):
            data["cors_origins"] = [o.strip() for o in origins.split(",") if o.strip()]
        return data

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token_is_long_or_unset(cls, token: object) -> object:
        if token in ("", None):
            return None  # METRICS_TOKEN= (empty) leaves /metrics open, as unset does
        if len(str(token).strip()) < 16:
            raise ValueError("METRICS_TOKEN must be at least 16 characters")
        return token

    @field_validator("password_reset_url")
    @classmethod
    def _reset_url_has_a_token(cls, url: str | None) -> str | None:
        if url is not None and (
            "{token}" not in url or not url.startswith(("http://", "https://"))
        ):
            raise ValueError("PASSWORD_RESET_URL must be an http(s) URL containing {token}")
        return url

    @model_validator(mode="after")
    def _hash_memory_covers_its_lanes(self) -> Self:
        if self.password_hash_memory_kib < 8 * self.password_hash_parallelism:
            raise ValueError("PASSWORD_HASH_MEMORY_KIB must be at least 8 per lane")
        return self

    @model_validator(mode="after")
    def _resolve_secret(self) -> Self:
        if self.environment is Environment.production:
            if len(self.secret_key.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"SECRET_KEY must be set to at least {MIN_SECRET_BYTES} bytes in production"
                )
        elif not self.secret_key:
            self.secret_key = dev_secret_key()
        return self

    @model_validator(mode="after")
    def _mail_is_configured_in_production(self) -> Self:
        if self.environment is Environment.production:
            missing = [
                name.upper()
                for name in ("smtp_host", "email_from", "password_reset_url")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)} must be set in production (password reset emails)"
                )
        return self

    @property
    def guards_webhook_urls(self) -> bool:
        """Whether webhook URLs must resolve to public addresses only."""
        return self.environment is Environment.production and not self.webhook_allow_private_urls

    @property
    def reset_link_template(self) -> str:
        """The emailed link; in development, by default, Swagger's page of the confirm route."""
        return self.password_reset_url or DEV_RESET_URL

    @property
    def sender(self) -> str:
        return self.email_from or DEV_SENDER


def dev_secret_key(path: Path = DEV_SECRET_FILE) -> str:
    """A random key created once per checkout, so tokens survive `--reload` restarts.

    The key is written to a temporary file and hard-linked into place, so workers starting
    together agree on one complete key instead of reading a half-written file.
    """
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
