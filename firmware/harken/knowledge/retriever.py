"""The one small interface retrieval sits behind, and its embedded implementation over the store's packs.

Whatever answers from knowledge (the router's next step, ``harken knowledge
search``, the bench) asks a :class:`Retriever` two things: the passages that best
match a question, and whether the question is about the subject of a pack that
would rather say "I don't know" than let the language model guess. A retriever
on a vector database (ChromaDB, pgvector) would implement the same two methods:
see docs/knowledge.md.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from harken.errors import KnowledgeError
from harken.knowledge import packs
from harken.knowledge.index import Index, Passage, content_words

_LOGGER = logging.getLogger(__name__)


class Retriever(Protocol):
    def search(self, question: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages that best answer ``question``, best first (coverage: how much of it each holds)."""
        ...

    def subject(self, question: str) -> str | None:
        """The pack (one that declines rather than guesses) whose subject ``question`` is about, or None."""
        ...


class PackRetriever:
    """SQLite FTS5 over every installed pack; picks up packs installed or removed while it runs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stamp: int | None = None
        self._indexes: list[tuple[packs.Pack, Index]] = []
        self._lock = threading.Lock()
        self.problems: list[str] = []

    @property
    def packs(self) -> list[packs.Pack]:
        with self._lock:
            self._refresh()
            return [pack for pack, _ in self._indexes]

    def _refresh(self) -> None:
        stamp = packs.stamp(self.data_dir)
        if stamp == self._stamp:
            return
        for _, old in self._indexes:
            old.close()
        self._indexes, self.problems = [], []
        found, broken = packs.installed(self.data_dir)
        for pack in found:
            try:
                self._indexes.append((pack, Index(pack.name, pack.index_path, general=not pack.meta.get("declines", True))))
            except KnowledgeError as exc:
                self.problems.append(str(exc))
        self.problems += [f"knowledge pack at {path}: {why}" for path, why in broken]
        for problem in self.problems:
            _LOGGER.warning("%s", problem)
        self._stamp = stamp
        if found:
            _LOGGER.info("knowledge packs: %s", ", ".join(p.name for p in found))

    def search(self, question: str, k: int = 3) -> list[Passage]:
        terms = content_words(question)
        with self._lock:
            self._refresh()
            hits = [hit for _, idx in self._indexes for hit in idx.search(idx.joined(question, terms), k)]
        return sorted(hits, key=lambda p: (p.coverage, p.score), reverse=True)[:k]

    def subject(self, question: str) -> str | None:
        terms = content_words(question)
        with self._lock:
            self._refresh()
            for pack, idx in self._indexes:
                if pack.meta.get("declines", True) and any(idx.in_headings(t) for t in terms):
                    return pack.name
        return None
