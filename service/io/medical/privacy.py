"""Keep identifiers out of messages that quote third-party libraries (highdicom, FFmpeg, HTTP servers)."""

from __future__ import annotations

import logging
import re

_UID = re.compile(r"\d+(?:\.\d+){3,}")               # DICOM UIDs: dotted digit runs
_DATE = re.compile(r"(?<!\d)(?:19|20)\d{6}(?:\d{4,6})?(?!\d)")  # DA / DT values: 20240102, 20240102101500
_QUOTED = re.compile(r"(['\"])(?:(?!\1).){1,120}\1")  # quoted values may be names or IDs


def scrub(text: str, limit: int = 200) -> str:
    """A library's message with UIDs, dates and quoted values replaced, cut to ``limit`` characters."""
    text = _UID.sub("<uid>", text)
    text = _DATE.sub("<date>", text)
    text = _QUOTED.sub("<value>", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ScrubFilter(logging.Filter):
    """Rewrites a library's log record with :func:`scrub` applied (highdicom logs source-instance UIDs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), limit=500), None
        return True


def guard_library_logs(prefix: str) -> None:
    """Attach :class:`ScrubFilter` to every logger named ``prefix`` or ``prefix.*`` that exists now.

    Logger filters do not apply to child loggers' records, so each one needs its own; call this after the
    library is imported (its modules create their loggers at import).
    """
    names = [prefix] + [n for n in logging.Logger.manager.loggerDict if n.startswith(prefix + ".")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(ScrubFilter())
