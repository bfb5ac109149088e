"""Logging: one JSON object per line (or plain text for development), secrets masked.

The app configures logging when it is created (`configure`, from its Settings). Uvicorn's
supervisor (`--reload`, `--workers`) never creates the app, so it logs through whatever
`--log-config` gives it: log_config.json, whose one handler is built by `configure_from_env`
here, so its lines are formatted like the app's.
"""

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache

from pydantic import create_model
from pydantic_settings import BaseSettings

from settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Anything shaped like a JWT, and the value after "password" or "authorization". Nothing logs
# them on purpose; this is the net under a mistake (an exception message quoting a body).
_JWT = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")
_SECRET_FIELD = re.compile(
    r"(?i)\b(authorization|password)([\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s\"',}]+"
)


# Cheap tests that rule the patterns out first: nearly every line (an access-log line among
# them) contains neither, and running the two patterns cost more than the rest of the line.
_JWT_HINT = "eyJ"
_SECRET_HINT = re.compile(r"(?i)authorization|password")


def redact(text: str) -> str:
    if _JWT_HINT in text:
        text = _JWT.sub("[redacted]", text)
    if _SECRET_HINT.search(text):
        text = _SECRET_FIELD.sub(r"\1\2[redacted]", text)
    return text


_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    # One encoder for every line: json.dumps(..., default=str) builds a new one per call.
    _encoder = json.JSONEncoder(default=str)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return self._encoder.encode(entry)


@lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the part up to the second is reused within it."""
    seconds = int(created)
    return f"{_second(seconds)}.{int((created - seconds) * 1000):03d}+00:00"


class TextFormatter(logging.Formatter):
    """For a developer's terminal: the message, then who and which request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if (user := getattr(record, "user_id", None)) is not None:
            line += f" user={user}"
        if (rid := request_id.get()) is not None:
            line += f" [{rid}]"
        return redact(line)


HANDLER_NAME = "orders"


def configure(level: str, fmt: str) -> logging.Handler:
    """Route every logger (ours, uvicorn's, alembic's) through one handler and format; return
    the handler.

    Uvicorn's own access log is switched off: the app writes a richer line per request.
    """
    # Neither format shows the source line, thread or process of a record, so the logging
    # module need not look them up for every line (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Replace our own handler (the app may be created again, as tests do); keep others.
    root.handlers = [h for h in root.handlers if h.get_name() != HANDLER_NAME] + [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return handler


class _FromEnvironment(BaseSettings):
    model_config = Settings.model_config  # the environment, then the optional .env file


# Settings' own two logging fields (type, default, validation), read the way Settings reads
# them, without the rest: Settings() also resolves the secret key (in development it creates
# .secret_key), which is no business of a process that only logs.
LogSettings = create_model(
    "LogSettings",
    __base__=_FromEnvironment,
    **{
        name: (Settings.model_fields[name].annotation, Settings.model_fields[name])
        for name in ("log_level", "log_format")
    },
)


def configure_from_env() -> logging.Handler:
    """`configure` from LOG_LEVEL and LOG_FORMAT; the handler factory of log_config.json.

    `uvicorn main:app --log-config log_config.json` loads that file in its supervisor and
    again in each worker before importing main (whose create_app then configures logging
    from its Settings, the same way), so every line, the supervisor's included, has the
    app's format. Uvicorn puts the working directory (--app-dir) on sys.path before it
    loads the file, which is how `logs` is found.
    """
    values = LogSettings()
    return configure(values.log_level, values.log_format)
