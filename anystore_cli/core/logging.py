"""Logging of the library (the names of anystore's `logging` module), on the standard library.

The original returns structlog loggers; structlog is no dependency here, so `get_logger` returns
a small logger with the same call surface: `log.info("event", key=value)`, `log.bind(...)`,
`log.warning`, `log.error`, `log.exception`. Fields are rendered as `key=value` after the event,
or as JSON objects (`message`, `severity`, fields) with `ANYSTORE_LOG_JSON=true`.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from logging import Filter, LogRecord
from typing import Any

__all__ = ["BoundLogger", "configure_logging", "format_json", "get_logger"]

_FIELDS = "anystore_fields"


class BoundLogger:
    """A stdlib logger that takes keyword fields (structlog's `BoundLogger` call surface).

    Args:
        logger: The `logging.Logger` to log to
        context: Fields added to every event
    """

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._context = dict(context or {})

    @property
    def name(self) -> str:
        """The logger's name."""
        return self._logger.name

    def bind(self, **fields: Any) -> BoundLogger:
        """Return a logger that adds `fields` to every event."""
        return BoundLogger(self._logger, {**self._context, **fields})

    def unbind(self, *keys: str) -> BoundLogger:
        """Return a logger without the bound fields `keys`."""
        return BoundLogger(self._logger, {k: v for k, v in self._context.items() if k not in keys})

    def new(self, **fields: Any) -> BoundLogger:
        """Return a logger with only `fields` bound."""
        return BoundLogger(self._logger, fields)

    def _log(self, level: int, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        stack_info = bool(fields.pop("stack_info", False))
        merged = {**self._context, **fields}
        self._logger.log(
            level, event, *args, exc_info=exc_info, stack_info=stack_info, stacklevel=3, extra={_FIELDS: merged}
        )

    def debug(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at DEBUG level."""
        self._log(logging.DEBUG, event, args, fields)

    def info(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at INFO level."""
        self._log(logging.INFO, event, args, fields)

    def warning(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at WARNING level."""
        self._log(logging.WARNING, event, args, fields)

    warn = warning

    def error(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at ERROR level."""
        self._log(logging.ERROR, event, args, fields)

    def critical(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at CRITICAL level."""
        self._log(logging.CRITICAL, event, args, fields)

    fatal = critical

    def exception(self, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at ERROR level with the current exception's traceback."""
        fields.setdefault("exc_info", True)
        self._log(logging.ERROR, event, args, fields)

    def log(self, level: int, event: Any = None, *args: Any, **fields: Any) -> None:
        """Log `event` at `level`."""
        self._log(level, event, args, fields)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the stdlib's name
        """Whether an event at `level` would be logged."""
        return self._logger.isEnabledFor(level)

    def __repr__(self) -> str:
        return f"<BoundLogger {self.name!r} context={self._context!r}>"


def get_logger(name: str | None = None, *args: Any, **context: Any) -> BoundLogger:
    """Return a logger for `name` that takes keyword fields: `log.info("Done.", uri=uri)`.

    Args:
        name: Logger name, usually `__name__`
        **context: Fields bound to every event
    """
    return BoundLogger(logging.getLogger(name), context)


def _fields(record: LogRecord) -> dict[str, Any]:
    return dict(getattr(record, _FIELDS, None) or {})


class ConsoleFormatter(logging.Formatter):
    """`2024-01-01T00:00:00Z [info     ] event  [logger] key=value` lines."""

    def format(self, record: LogRecord) -> str:
        """Render one record."""
        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z")
        text = f"{stamp} [{record.levelname.lower():<9}] {record.getMessage()}  [{record.name}]"
        fields = " ".join(f"{key}={value!r}" for key, value in _fields(record).items())
        if fields:
            text += " " + fields
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with `message` and `severity` (Stackdriver's keys)."""

    def format(self, record: LogRecord) -> str:
        """Render one record."""
        import orjson

        data: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            **_fields(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        data = format_json(None, None, data)
        return orjson.dumps(data, default=str).decode()


def format_json(_: Any, __: Any, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename `event` to `message` and `level` to upper-case `severity`."""
    event_dict["message"] = event_dict.pop("event", None)
    event_dict["severity"] = str(event_dict.pop("level", "info")).upper()
    return event_dict


class _MaxLevelFilter(Filter):
    def __init__(self, highest_log_level: int) -> None:
        super().__init__()
        self._highest_log_level = highest_log_level

    def filter(self, record: LogRecord) -> bool:
        return record.levelno <= self._highest_log_level


_HANDLERS: list[logging.Handler] = []


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records to stderr, console lines or JSON (`ANYSTORE_LOG_JSON=true`).

    The root level comes from the library's settings (`LOG_LEVEL` or `ANYSTORE_LOG_LEVEL`,
    default "info"); `level` is the lowest level the stderr handler shows, lowered to the root
    level when that is lower (`LOG_LEVEL=debug` shows debug lines). Calling it again replaces
    the handlers it added before.

    Args:
        level: Lowest level shown
    """
    from anystore_cli.core.settings import Settings

    settings = Settings()
    root_level = logging.getLevelName(str(settings.log_level).upper())
    formatter: logging.Formatter = JsonFormatter() if settings.log_json else ConsoleFormatter()
    out_handler = logging.StreamHandler(sys.stderr)
    out_handler.setLevel(min(level, root_level) if isinstance(root_level, int) else level)
    out_handler.addFilter(_MaxLevelFilter(logging.WARNING))
    out_handler.setFormatter(formatter)
    error_handler = logging.StreamHandler(sys.stderr)
    error_handler.setLevel(logging.ERROR)
    error_handler.setFormatter(formatter)
    root = logging.getLogger()
    for handler in _HANDLERS:
        root.removeHandler(handler)
    _HANDLERS[:] = [out_handler, error_handler]
    root.setLevel(str(settings.log_level).upper())
    root.addHandler(out_handler)
    root.addHandler(error_handler)
