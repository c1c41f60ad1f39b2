"""The daemon's logging: text or JSON lines, to stderr or to a file reopened on SIGHUP.

Rules this module keeps (docs/ops.md, "Logs"):
1. One line per record. `json`: one JSON object per line with the fields `ts` (UTC, ISO 8601
   with milliseconds and `Z`), `level`, `logger`, `node` (the config's `name`), `msg` (the
   formatted message), `event` (a short snake_case name for the lines that tell the node's story,
   e.g. `commit`, `peer_up`; absent on other lines), the event's own fields (passed as
   `extra={"event": ..., "fields": {...}}`), and `exc` (the traceback, when there is one). The
   event's fields never replace the fields above (a clashing one is prefixed with `field_`).
   `text`: `<ts> <LEVEL> <logger>: <msg>`; the event's fields are already in the message.
2. A log file is opened in append mode and reopened by `reopen()` (the daemon calls it on
   SIGHUP): after logrotate moves the file, the next line goes to a fresh file at the same path,
   and nothing is lost in between (the handler's lock covers the swap).
3. Formatting never raises into the caller: a field that JSON cannot encode is written as its
   `repr`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "ReopenableFileHandler",
    "TextFormatter",
    "configure_logging",
    "event_extra",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_RESERVED = ("ts", "level", "logger", "node", "msg", "event", "exc")


def event_extra(event: str, **fields: Any) -> dict[str, Any]:
    """The `extra=` of a story line: `log.info(msg, *args, extra=event_extra("commit", h=1))`."""
    return {"event": event, "fields": fields}


def _iso_utc(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


class _NodeName(logging.Filter):
    """Puts the node's name on every record (the `node` field)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.node_name = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_name
        return True


class JsonFormatter(logging.Formatter):
    """Rule 1, `json`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", ""),
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, str):
            doc["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                name = str(key)
                doc[f"field_{name}" if name in _RESERVED else name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=repr)


class TextFormatter(logging.Formatter):
    """Rule 1, `text` (the format the node always had)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class ReopenableFileHandler(logging.FileHandler):
    """Rule 2: a FileHandler whose `reopen()` swaps in a fresh file at the same path."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=False)

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            if old is not None:
                old.close()
        finally:
            self.release()


def configure_logging(
    *, fmt: str, level: str, node_name: str, log_file: str = ""
) -> ReopenableFileHandler | None:
    """Replace the root logger's handlers with one that writes `fmt` lines to `log_file` (or
    stderr); return the file handler (for SIGHUP), or None when logging to stderr."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler: logging.Handler
    file_handler = None
    if log_file:
        handler = file_handler = ReopenableFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_NodeName(node_name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return file_handler
