"""Logging: the original's text format or one JSON object per line, and never a credential.

Redaction is done on the formatted output of every record (message, arguments, traceback), so a
secret cannot slip through an argument or an exception's text; it is the last step before a line
is written, whatever logger produced it.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Iterable, Optional
from urllib.parse import urlsplit

TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
LOG_FORMATS = ("text", "json")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words
COUNTERS_ATTRIBUTE = "counters"  # extra={"counters": {...}} puts fields on a JSON line
# extra={"always_shown": True}: a warning the operator must see even without -v (a --cluster-name
# that matches no group: without it, a typo looks like a quiet, healthy autoscaler).
ALWAYS_SHOWN = "always_shown"
NOISY_LIBRARIES = ("botocore", "boto3", "urllib3", "kubernetes")


def secret_values(*values: Optional[str]) -> tuple[str, ...]:
    """The strings to hide: each credential, and for a URL (the Slack hook) its path too, which
    is the secret part and what an HTTP library would log on its own."""
    secrets = set()
    for value in values:
        if not value:
            continue
        secrets.add(value)
        path = urlsplit(value).path if "://" in value else ""
        if len(path) >= MIN_SECRET_LENGTH and path.count("/") > 1:
            secrets.add(path)
    # Longest first, so a URL is replaced whole before its path is looked for.
    return tuple(sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=lambda s: (-len(s), s)))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = tuple(secrets)
        # JSON escaping could change how a secret looks in a JSON line ("/" stays, but quotes or
        # backslashes would not), so the escaped forms are hidden too.
        self._forms = tuple(dict.fromkeys(
            form for secret in self.secrets for form in (secret, json.dumps(secret)[1:-1])))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


class TextFormatter(logging.Formatter):
    """The original's format, with secrets hidden."""

    def __init__(self, redactor: Redactor):
        super().__init__(TEXT_FORMAT)
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the traceback if any, and the
    loop's counters as fields of their own on the summary line."""

    RESERVED = frozenset({"time", "level", "logger", "message", "exception"})

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        counters = getattr(record, COUNTERS_ATTRIBUTE, None)
        if isinstance(counters, dict):
            for key, value in counters.items():
                if key not in self.RESERVED:
                    entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return self.redact(json.dumps(entry, default=str))


def level_for(verbosity: int) -> int:
    """The original's levels: none -> errors only, -v warnings, -vv info, -vvv debug."""
    return {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)


def configure_logging(verbosity: int, log_format: str = "text", secrets: Iterable[str] = (),
                      stream=None) -> logging.Handler:
    """Replace the root handlers with one that writes ``log_format`` lines to stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    level = level_for(verbosity)
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor))
    handler.addFilter(lambda record: record.levelno >= level or getattr(record, ALWAYS_SHOWN, False))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Warnings are made at any verbosity, so that ALWAYS_SHOWN ones reach the handler's filter.
    root.setLevel(min(level, logging.WARNING))
    # Library debug output is noise at our -vvv, and botocore's can include request signatures.
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
