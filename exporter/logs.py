"""Logging: logfmt or JSON, one processor chain for our logs and third-party ones.

Every registered secret is replaced by `<redacted>` in every log line, at every level, right
before the line is rendered, whatever field or exception text it hides in.
"""

import logging
import sys
import threading
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, WrappedLogger

LogFormat = Literal["logfmt", "json"]
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "<redacted>"


class SecretRedactor:
    """A structlog processor that blanks out every secret it was told about."""

    def __init__(self) -> None:
        self._static: frozenset[str] = frozenset()
        self._rotating: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._static = self._static | {s for s in secrets if len(s) >= 4}
            self._update()

    def rotate(self, name: str, *secrets: str) -> None:
        """Secrets that replace earlier ones of the same name (a session's rotating tokens).

        The previous generation stays redacted too, for lines about a request still in flight.
        """
        with self._lock:
            _, previous = self._rotating.get(name, (frozenset(), frozenset()))
            self._rotating[name] = (previous, frozenset(s for s in secrets if len(s) >= 4))
            self._update()

    def _update(self) -> None:
        rotating = [s for generations in self._rotating.values() for g in generations for s in g]
        self._secrets = self._static | frozenset(rotating)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if isinstance(value, bool | int | float) or value is None:
                continue
            event[key] = self.redact(value if isinstance(value, str) else str(value))
        return event


REDACTOR = SecretRedactor()


def _rename_event(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event["msg"] = event.pop("event", "")
    return event


def _renderer(fmt: LogFormat) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    return structlog.processors.LogfmtRenderer(
        key_order=["ts", "level", "logger", "msg"], drop_missing=True
    )


def configure_logging(level: str, fmt: LogFormat) -> None:
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _rename_event,
            REDACTOR,
            _renderer(fmt),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    for noisy in ("httpx", "httpcore", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(LEVELS[level], logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
