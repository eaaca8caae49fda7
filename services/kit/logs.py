"""Structured JSON-lines logging with the request id; secrets and tokens never reach a log line."""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Bearer tokens and anything that looks like key=value secrets are scrubbed as a last line of defence;
# the first line is that no code passes a secret to a logger.
_SCRUB = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+|((?:password|secret|token)\"?\s*[:=]\s*\"?)[^\s\",]+")


# _SCRUB can only match where one of these words is (case-insensitively: every character re's IGNORECASE
# equates with one of their letters casefolds to that letter), so text without them is returned unscanned.
_MARKERS = ("bearer", "password", "secret", "token")
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # what json.dumps(..., separators=...) builds per call


def scrub(text: str) -> str:
    folded = text.casefold()
    if "bearer" not in folded and "password" not in folded and "secret" not in folded and "token" not in folded:
        return text
    return _SCRUB.sub(lambda m: (m.group(1) or m.group(2)) + "[REDACTED]", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        exc_type = record.exc_info[0] if record.exc_info else None
        return self.line(record.created, record.msecs, record.levelname, record.name, record.getMessage(),
                         getattr(record, "fields", {}), exc_type)

    def line(self, created: float, msecs: float, levelname: str, name: str, message: str, fields: dict,
             exc_type: type | None = None) -> str:
        """The JSON line of one record (format() of a LogRecord with these attributes)."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        entry = {
            "ts": f"{cached[1]}.{int(msecs):03d}Z",
            "level": levelname.lower(),
            "service": self.service,
            "logger": name,
            "msg": scrub(message),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in fields.items():
            entry[key] = scrub(value) if isinstance(value, str) else value
        if exc_type is not None:
            entry["error_type"] = exc_type.__name__
        return _COMPACT.encode(entry)


_installed: list[logging.StreamHandler] = []  # the handler setup() put on the root logger


def setup(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _installed[:] = [handler]
    root.setLevel(level)
    for noisy in ("sqlalchemy", "aiosqlite", "alembic", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    logger.log(level, msg, extra={"fields": fields})


def _only_setup_handler(logger: logging.Logger, level: int) -> logging.StreamHandler | None:
    """setup()'s handler when it is the one handler a record of `logger` at `level` reaches and nothing
    could filter or change the record on its way (else None)."""
    if logger.handlers or logger.filters or logger.disabled or not logger.propagate or not _installed:
        return None
    root = logger.parent
    handler = _installed[0]
    if root is not logging.root or root.filters or len(root.handlers) != 1 or root.handlers[0] is not handler:
        return None
    if handler.filters or level < handler.level or type(handler.formatter) is not JsonFormatter:
        return None
    return handler


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict) -> None:
    """log(logger, level, msg, **fields) for the hot path (the access log line of every call): when setup()'s
    handler alone would write the record, the same line is formatted and written without a LogRecord."""
    if not logger.isEnabledFor(level):
        return
    handler = _only_setup_handler(logger, level)
    if handler is None:
        logger.handle(logger.makeRecord(logger.name, level, "", 0, msg, (), None, extra={"fields": fields}))
        return
    created = time.time()  # as LogRecord takes created and msecs
    line = handler.formatter.line(created, int((created - int(created)) * 1000) + 0.0,
                                  logging.getLevelName(level), logger.name, msg, fields)
    with handler.lock:  # as StreamHandler.emit, under Handler.handle's lock
        try:
            stream = handler.stream
            stream.write(line + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own policy for a failed write
            handler.handleError(logger.makeRecord(logger.name, level, "", 0, msg, (), None,
                                                  extra={"fields": fields}))
