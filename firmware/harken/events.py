"""The event stream: every wake, transcript, reply, utterance summary, error and worker change.

Events are plain dicts with a ``type``. The log stamps each with ``ts`` (wall
clock, for humans), writes it as one JSON line when a file is attached, and hands
it to subscribers (the CLI's printer, later the MQTT link). It keeps the most
recent :data:`HISTORY_LIMIT` events in memory (``history``) for summaries.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Callable

_LOGGER = logging.getLogger(__name__)

Subscriber = Callable[[dict[str, Any]], None]

HISTORY_LIMIT = 2000
"""Events kept in ``EventLog.history``; older ones are dropped, so a device that
runs for months holds a bounded amount (the file and the subscribers see all)."""


class EventLog:
    def __init__(self, path: Path | None = None, history_limit: int = HISTORY_LIMIT) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, not {history_limit}")
        self._fh: IO[str] | None = path.open("w", encoding="utf-8") if path else None
        self._subscribers: list[Subscriber] = []
        self.history: deque[dict[str, Any]] = deque(maxlen=history_limit)
        """The most recent events, oldest first (iterate it; it is not a list)."""

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "ts": round(time.time(), 3)}
        self.history.append(event)
        if self._fh is not None:
            self._fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._fh.flush()
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:  # a broken subscriber must not break the pipeline
                _LOGGER.exception("event subscriber failed")
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
