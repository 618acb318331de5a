"""A pack's index: its passages in SQLite with an FTS5 full-text index, searched by BM25.

A passage is a piece of one section, at most ``PASSAGE_WORDS`` words, cut at
paragraph and then sentence ends, and it keeps the headings above it: they are
indexed as a column of their own (weighted higher than the text), so "pool
hours" finds the text under "Pool" even when the text never says "pool".

Words go through SQLite's own Porter stemmer ("opening" finds "opens"); a
question is searched as the OR of its content words, and each match says which
of those words the passage holds, weighted by how rare the word is in the pack:
that is what :mod:`harken.knowledge.ground` decides with.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harken.errors import KnowledgeError
from harken.knowledge.documents import Section

PASSAGE_WORDS = 90
"""Longest passage (words): long enough for a paragraph with its context, short enough for a small model's prompt."""
SCHEMA = 1
HEADING_WEIGHT = 2.5
"""BM25 weight of the headings column against the text's 1.0."""
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between both
but by can can't could couldn't did didn't do does doesn't doing don't down during each few for from further had hadn't
has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm
i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on once only or other
ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some such than that that's
the their theirs them themselves then there there's these they they'd they'll they're they've this those through to too
under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while
who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
tell please know want wanna gonna need got get give also just really actually like say said does anything something
thing things way much many okay ok hey yes yeah um uh will shall may might must one
""".split())
"""Words that say nothing about what is asked (question words, pronouns, auxiliaries, politeness)."""
_NOT_JOINED = frozenset("a an the i my your our his her its their this that is are was to of in on at for and or".split())
_WORD = re.compile(r"[^\W_]+(?:['’.][^\W_]+)*", re.UNICODE)


SPOKEN = [(re.compile(r"\b(?:wi[- ]fi|wife i|why fi|wifey)\b"), "wifi"), (re.compile(r"\be[- ]mail\b"), "email")]
"""How a recogniser writes words it does not know as one (piper's "wifi" comes back as "wife I")."""


def words(text: str) -> list[str]:
    text = text.lower().replace("’", "'")
    for pattern, word in SPOKEN:
        text = pattern.sub(word, text)
    return _WORD.findall(text)


def content_words(text: str) -> list[str]:
    """The words of a question worth searching for, in order, each once."""
    seen: dict[str, None] = {}
    for w in words(text):
        w = w.strip(".'")
        if w and w not in STOPWORDS and not (len(w) == 1 and not w.isdigit()):
            seen.setdefault(w, None)
    return list(seen)


def passages(section: Section, limit: int = PASSAGE_WORDS) -> list[str]:
    """The section's text cut into passages of at most ``limit`` words (a longer sentence is cut too)."""
    pieces: list[str] = []
    for paragraph in section.text.split("\n"):
        n = len(paragraph.split())
        if n <= limit:
            pieces.append(paragraph)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            ws = sentence.split()
            pieces += [" ".join(ws[i:i + limit]) for i in range(0, len(ws), limit)]
    out: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > limit:
            out.append("\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        out.append("\n".join(current))
    return [p for p in out if p.strip()]


@dataclass(frozen=True)
class Passage:
    pack: str
    doc: str
    headings: str
    """The headings above it, joined with " › "."""
    text: str
    score: float
    """BM25 (higher is better; comparable within one pack and question)."""
    matched: tuple[str, ...] = ()
    """The question's content words this passage holds."""
    weights: tuple[tuple[str, float], ...] = ()
    """The question's content words with their rarity in the pack."""
    general: bool = False
    """From a general pack (one that never declines): its answers must hold more of the question."""

    @property
    def coverage(self) -> float:
        """The share of the question's content words (weighted by rarity in the pack) this passage holds."""
        total = sum(w for _, w in self.weights) or 1.0
        return sum(w for t, w in self.weights if t in self.matched) / total

    @property
    def where(self) -> str:
        return " › ".join(p for p in (self.doc, self.headings.rpartition(" › ")[2]) if p)

    def as_json(self, text: bool = True) -> dict[str, object]:
        found: dict[str, object] = {"pack": self.pack, "doc": self.doc, "headings": self.headings,
                                    "score": round(self.score, 3), "coverage": round(self.coverage, 3)}
        if text:
            found["text"] = self.text
        return found


def build(path: Path, sections: Iterable[Section]) -> int:
    """Write the index of ``sections`` to a new SQLite file at ``path``; the number of passages."""
    if path.exists():
        raise KnowledgeError(f"{path} exists already")
    db = sqlite3.connect(path)
    try:
        db.executescript(f"""
            PRAGMA journal_mode = OFF;
            PRAGMA user_version = {SCHEMA};
            CREATE TABLE passages (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, headings TEXT NOT NULL, body TEXT NOT NULL);
            CREATE VIRTUAL TABLE fts USING fts5(headings, body, content='passages', content_rowid='id',
                                                tokenize='porter unicode61 remove_diacritics 2');
        """)
        rows = ((s.doc, " › ".join(s.headings), text) for s in sections for text in passages(s))
        db.executemany("INSERT INTO passages (doc, headings, body) VALUES (?, ?, ?)", rows)
        count = db.execute("SELECT count(*) FROM passages").fetchone()[0]
        db.execute("INSERT INTO fts (rowid, headings, body) SELECT id, headings, body FROM passages")
        db.execute("INSERT INTO fts (fts) VALUES ('optimize')")
        db.commit()
    finally:
        db.close()
    return int(count)


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


class Index:
    """One pack's index, opened read-only."""

    def __init__(self, pack: str, path: Path, general: bool = False) -> None:
        self.pack = pack
        self.general = general
        self.path = path
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            self.size = self.db.execute("SELECT count(*) FROM passages").fetchone()[0]
        except sqlite3.Error as exc:
            raise KnowledgeError(f"knowledge pack {pack}: its index {path} cannot be read ({exc}); reinstall the pack") from None
        if version != SCHEMA:
            raise KnowledgeError(f"knowledge pack {pack}: its index is of another version ({version}); reinstall the pack")
        self._df: dict[str, int] = {}
        self._subject: dict[str, bool] = {}

    def close(self) -> None:
        self.db.close()

    def df(self, word: str) -> int:
        """How many passages hold ``word`` (stemmed as the index stems)."""
        if word not in self._df:
            self._df[word] = self.db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (_quoted(word),)).fetchone()[0]
        return self._df[word]

    def in_headings(self, word: str) -> bool:
        """Whether a heading of the pack holds ``word``: the pack is about it."""
        if word not in self._subject:
            hit = self.db.execute("SELECT 1 FROM fts WHERE fts MATCH ? LIMIT 1", ("headings : " + _quoted(word),)).fetchone()
            self._subject[word] = hit is not None
        return self._subject[word]

    def idf(self, word: str) -> float:
        """Rarity of ``word`` in the pack; a word the pack never uses counts as rarest."""
        return math.log((self.size + 1) / (self.df(word) + 0.5))

    def joined(self, question: str, terms: list[str]) -> list[str]:
        """``terms`` with two words the pack writes as one joined ("pass word" → "password", "check out" → "checkout")."""
        said = words(question)
        for a, b in zip(said, said[1:]):
            if a in _NOT_JOINED or b in _NOT_JOINED:
                continue  # "a light" is not "alight"
            if a + b not in terms and self.df(a + b) and (a in terms or b in terms):
                terms = [t for t in terms if t not in (a, b)] + [a + b]
        return terms

    def search(self, terms: list[str], k: int = 3) -> list[Passage]:
        """The ``k`` passages that best match any of ``terms`` (content words), best first."""
        if not terms or not self.size:
            return []
        query = " OR ".join(_quoted(t) for t in terms)
        try:
            rows = self.db.execute(
                f"SELECT rowid, -bm25(fts, {HEADING_WEIGHT}, 1.0) FROM fts WHERE fts MATCH ? ORDER BY bm25(fts, {HEADING_WEIGHT}, 1.0) LIMIT ?",
                (query, k)).fetchall()
        except sqlite3.Error as exc:
            raise KnowledgeError(f"knowledge pack {self.pack}: search failed ({exc})") from None
        if not rows:
            return []
        weights = tuple((t, self.idf(t)) for t in terms)
        found = []
        for rowid, score in rows:
            matched = tuple(t for t in terms if self.db.execute(
                "SELECT 1 FROM fts WHERE fts MATCH ? AND rowid = ?", (_quoted(t), rowid)).fetchone())
            doc, headings, body = self.db.execute("SELECT doc, headings, body FROM passages WHERE id = ?", (rowid,)).fetchone()
            found.append(Passage(self.pack, doc, headings, body, float(score), matched, weights, self.general))
        return found
