"""Text between the stages: the clause splitter that feeds TTS, and transcript clean-up."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "approx", "jr", "sr", "prof"}
_CLAUSE_END = ",;:"
_MARKUP = re.compile(r"[*_#`~|<>\[\]{}]+")


class ClauseSplitter:
    """Cut streamed LLM text into pieces that can be spoken as soon as they are complete.

    Sentences always end a piece. Before the first piece has been handed out, a
    clause boundary (comma, semicolon, colon) also ends one once it holds at
    least ``min_clause_chars`` characters: that is what gets the first audio out
    early. Later pieces break at clauses only when they grow long.
    """

    def __init__(self, min_clause_chars: int = 12, long_clause_chars: int = 80) -> None:
        self.min_clause_chars = min_clause_chars
        self.long_clause_chars = long_clause_chars
        self._buf = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        self._buf += text
        pieces = []
        while (cut := self._find_cut()) is not None:
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            if (piece := clean_for_speech(piece)):
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        piece, self._buf = clean_for_speech(self._buf), ""
        return [piece] if piece else []

    def _find_cut(self) -> int | None:
        buf = self._buf
        limit = self.min_clause_chars if self._emitted == 0 else self.long_clause_chars
        for i, ch in enumerate(buf[:-1]):
            if not buf[i + 1].isspace():
                continue
            if ch in ".!?" and not self._is_abbreviation(buf, i):
                return i + 1
            if ch in "\n":
                return i + 1
            if ch in _CLAUSE_END and len(buf[: i + 1].strip()) >= limit:
                return i + 1
        return None

    @staticmethod
    def _is_abbreviation(buf: str, i: int) -> bool:
        if buf[i] != ".":
            return False
        word = re.split(r"\s", buf[:i])[-1].lower().strip("(\"'")
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def clean_for_speech(text: str) -> str:
    """Remove markup a voice would read out; collapse whitespace."""
    text = _MARKUP.sub(" ", text)
    return " ".join(text.split())


WAKE_WORDS = {
    "hey_jarvis": ("hey", "jarvis"),
    "alexa": ("alexa",),
    "hey_mycroft": ("hey", "mycroft"),
    "hey_rhasspy": ("hey", "rhasspy"),
}


def _wakeish(word: str, wake_words: tuple[str, ...]) -> bool:
    last = wake_words[-1]
    if len(word) >= 4 and last.endswith(word):
        return True  # the tail of the phrase ("arvis") that the cut left in
    return any(SequenceMatcher(None, word, w).ratio() >= 0.75 for w in wake_words)


def split_wake_phrase(text: str, wake_model: str) -> tuple[str, bool]:
    """Remove the wake phrase (or what is left of it) from the start of a transcript.

    Returns the rest and whether the phrase's last word ("Jarvis", "Alexa", …)
    was among the words removed, i.e. whether the whole phrase was recognised.
    """
    wake_words = WAKE_WORDS.get(wake_model.partition("@")[0], ())  # a store id: name@sha256-prefix
    words = text.split()
    dropped, whole = 0, False
    while dropped < min(len(words), len(wake_words)):
        word = re.sub(r"[^a-z']", "", words[dropped].lower())
        if not word or not _wakeish(word, wake_words):
            break
        whole = whole or SequenceMatcher(None, word, wake_words[-1]).ratio() >= 0.75
        dropped += 1
    if not dropped:
        return text, False
    rest = " ".join(words[dropped:]).lstrip(" ,.;:!-")
    return rest[:1].upper() + rest[1:], whole


def strip_wake_words(text: str, wake_model: str) -> str:
    """Drop what is left of the wake phrase at the start of a transcript.

    Listening starts where the phrase is estimated to end; when a question
    follows without a pause, a fragment of the phrase can still be heard.
    """
    return split_wake_phrase(text, wake_model)[0]
