"""Grounded answers: what the device says when a question meets the knowledge packs.

After the skills, before the language model, the router's next step asks the
retriever. Three outcomes:

- **answer**: the best passage holds most of what was asked (its *coverage*,
  the question's content words weighted by their rarity in the pack, reaches
  ``MIN_COVERAGE``). The answer is the passage's own best sentence (``extract``,
  the default: numbers, names and times exactly as written, at once) or the
  language model's, given the passages in its prompt (``model``);
- **decline**: the question is about a pack's subject (a word of it is in the
  pack's headings) but no passage answers it: "Sorry, I don't have that
  information." rather than a guess;
- nothing: the question goes on to the language model as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harken.knowledge.index import Passage, content_words, words
from harken.knowledge.retriever import Retriever

MIN_COVERAGE = 0.5
"""Share of a question (weighted by rarity) the best passage must hold to answer it (chosen on tools/bench-knowledge)."""
GENERAL_MIN_COVERAGE = 0.9
"""The same for a general pack (one that never declines): it is large and wordy (WordNet's glosses), so a sentence
that holds part of the question is more often beside the point than the language model's own answer (measured with
tools/bench-knowledge's general phase)."""
DECLINE = "Sorry, I don't have that information."
MODEL_PROMPT = ("You answer a spoken question from the passages below. Answer in one short sentence, with the "
                "passages' own numbers, names and times exactly as written. If the passages do not answer the question, "
                "say: I don't know.")
_ANSWER_KINDS = [
    # (what the question asks for, what a sentence that answers it holds)
    (re.compile(r"\b(how much|cost|costs|price|fee|charge|pay)\b"), re.compile(r"[€$£]|\b(euros?|dollars?|pounds?|free|no charge)\b", re.I)),
    (re.compile(r"\bhow long\b"), re.compile(r"\b\d+(\.\d+)?\s*(seconds?|minutes?|mins?|hours?|days?|weeks?|months?|years?)\b", re.I)),
    (re.compile(r"\bhow often\b|\bwhen (do|should|must) (i|we|you)\b"), re.compile(r"\bevery\b|\bonce\b|\b\d+ (days|weeks|months)\b", re.I)),
    (re.compile(r"\b(when|what time|until|till|open|opens|close|closes)\b"),
     re.compile(r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2} ?(am|pm|a\.m\.|p\.m\.)|\b(midnight|noon)\b", re.I)),
    (re.compile(r"\b(phone|number|call|dial|ring)\b"), re.compile(r"\+?\d[\d ]{2,}\d")),
]
"""Kinds of answer a question asks for, and how a sentence that gives one looks: a sentence of the kind asked for
is preferred among those that hold as much of the question."""
_ASKS_NUMBER = re.compile(r"\b(when|time|times|hours?|open|close|how (much|many|long|far|old|big)|number|price|cost|code|password|pin)\b")


@dataclass(frozen=True)
class Grounding:
    kind: str
    """``answer`` or ``decline``."""
    pack: str
    passages: tuple[Passage, ...] = ()
    sentence: str = ""
    """For an answer: the sentence of the first passage that answers it."""

    @property
    def best(self) -> Passage | None:
        return self.passages[0] if self.passages else None

    def event(self, share_text: bool) -> dict[str, object]:
        """What the reply and utterance events say of it (the passage's text only if transcripts may be shared)."""
        found: dict[str, object] = {"pack": self.pack, "kind": self.kind}
        if self.best is not None:
            found["passage"] = self.best.as_json(text=share_text)
        return found


def decide(retriever: Retriever, question: str, k: int = 3, min_coverage: float = MIN_COVERAGE) -> Grounding | None:
    """Answer from a pack, decline, or None (the language model answers)."""
    hits = retriever.search(question, k)
    eligible = [h for h in hits if h.coverage >= (max(min_coverage, GENERAL_MIN_COVERAGE) if h.general else min_coverage)]
    if eligible:
        best = pick(eligible, question)
        assert best is not None
        ranked = (best.passage, *(h for h in hits if h is not best.passage))
        return Grounding("answer", best.passage.pack, ranked, best.sentence)
    pack = retriever.subject(question)
    if pack is not None:
        return Grounding("decline", pack, tuple(h for h in hits if h.pack == pack))
    return None


def _stem(word: str) -> str:
    word = word.lower().removesuffix("'s")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def sentences(text: str) -> list[str]:
    return [s.strip() for line in text.split("\n") for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", line) if s.strip()]


@dataclass(frozen=True)
class Choice:
    passage: Passage
    sentence: str
    coverage: float
    """The share of the question (weighted by rarity) the sentence and its headings hold."""


def pick(hits: list[Passage] | tuple[Passage, ...], question: str) -> Choice | None:
    """The sentence of the found passages that says most of what was asked: the question's words in it count fully,
    those only in its headings half (they say what it is about, not the answer); a number where one is asked for
    and a better-ranked passage break ties."""
    asked = question.lower()
    wants_number = bool(_ASKS_NUMBER.search(asked))
    kinds = [looks for asks, looks in _ANSWER_KINDS if asks.search(asked)]
    best: tuple[float, Choice] | None = None
    for rank, passage in enumerate(hits):
        weights = {_stem(t): w for t, w in passage.weights}
        total = sum(weights.values()) or 1.0
        heading = {_stem(w) for w in words(passage.headings)}
        for sentence in sentences(passage.text):
            said = {_stem(w) for w in words(sentence)}
            got = sum(w for t, w in weights.items() if t in said) + 0.5 * sum(
                w for t, w in weights.items() if t in heading and t not in said)
            coverage = got / total
            score = (coverage + (0.08 if wants_number and re.search(r"\d", sentence) else 0.0) - 0.03 * rank
                     + 0.15 * sum(1 for looks in kinds if looks.search(sentence)))
            if best is None or score > best[0]:
                best = (score, Choice(passage, sentence, coverage))
    if best is None:
        return None
    choice = best[1]
    if choice.sentence.endswith(":"):  # it introduces what follows: say that too
        following = sentences(choice.passage.text)
        at = following.index(choice.sentence)
        choice = Choice(choice.passage, " ".join(following[at:at + 3]), choice.coverage)
    return choice


def extract(grounding: Grounding, question: str) -> str:
    """What the device says: the chosen sentence (with its heading when it is a bare line), or the refusal."""
    if grounding.kind != "answer" or grounding.best is None:
        return DECLINE
    chosen = grounding.sentence or grounding.best.text
    heading = grounding.best.headings.rpartition(" › ")[2]
    if heading and len(chosen.split()) < 8 and not {_stem(w) for w in content_words(heading)} & {_stem(w) for w in words(chosen)}:
        chosen = f"{heading}: {chosen}"
    if not re.search(r"[.!?]$", chosen):
        chosen += "."
    return chosen


def said_at_once(grounding: Grounding, question: str, answer: str) -> str | None:
    """What the device says at once for ``grounding``: the refusal, or with ``[knowledge] answer = "extract"`` the
    pack's sentence; None when the language model writes the answer from the passages (``"model"``)."""
    if grounding.kind == "decline" or answer == "extract":
        return extract(grounding, question)
    return None


def messages(grounding: Grounding, question: str) -> list[dict[str, str]]:
    """The language model's prompt for a grounded answer: the passages, then the question."""
    context = "\n\n".join(f"[{p.headings or p.doc}]\n{p.text}" for p in grounding.passages)
    return [{"role": "system", "content": f"{MODEL_PROMPT}\n\n{context}"}, {"role": "user", "content": question}]
