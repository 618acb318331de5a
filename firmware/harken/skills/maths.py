"""Arithmetic as people ask it aloud: "seventeen times three", "15% of 80", "the square root of 144".

A language model guesses at sums; this answers them exactly. The question is
read by a small tokenizer and a recursive-descent parser over words and
symbols, never by Python's own evaluator, and it is bounded before any work is
done: at most :data:`MAX_TOKENS` words and symbols, numbers of at most
:data:`MAX_NUMBER_CHARS` characters, and no power whose result would pass
10**100 (checked with logarithms before computing it).

Precedence is the usual one (powers, then times and divided by, then plus and
minus), so an answer restates the question in the same order of words it was
asked in: "2 plus 3 times 4 is 14."

:class:`NotMaths` means "not a sum; try another skill"; :class:`MathsError` is a
sum that has no answer, and its text is the sentence to say.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from harken.errors import HarkenError
from harken.skills.numbers import NUMBER_WORDS, approximately, parse_number, say_number

MAX_TOKENS = 40
MAX_NUMBER_CHARS = 30
MAX_MAGNITUDE = 100
"""Results must lie within 10**-100 and 10**100 (zero aside)."""


class NotMaths(HarkenError, ValueError):
    """The text is not an arithmetic question (the router tries something else)."""


class MathsError(HarkenError, ValueError):
    """An arithmetic question without an answer; ``str()`` is the sentence to say."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Unary:
    op: str
    """A key of ``_UNARY``."""
    operand: Expr


@dataclass(frozen=True)
class Binary:
    op: str
    """A key of ``_BINARY``."""
    left: Expr
    right: Expr


Expr = Num | Unary | Binary

_Phrases = dict[tuple[str, ...], str]
_ADDITIVE: _Phrases = {("plus",): "plus", ("added", "to"): "plus", ("minus",): "minus", ("take", "away"): "minus", ("less",): "minus"}
_MULTIPLICATIVE: _Phrases = {
    ("times",): "times", ("times", "by"): "times", ("multiplied", "by"): "times", ("multiply", "by"): "times", ("x",): "times",
    ("divided", "by"): "divided by", ("divide", "by"): "divided by", ("over",): "divided by",
}
_NEGATIVE: _Phrases = {("minus",): "minus", ("negative",): "minus"}
_POWER: _Phrases = {
    ("to", "the", "power", "of"): "to the power of", ("to", "the", "power"): "to the power of", ("to", "the"): "to the power of",
    ("raised", "to", "the", "power", "of"): "to the power of", ("raised", "to"): "to the power of",
}
_POSTFIX: _Phrases = {("squared",): "squared", ("cubed",): "cubed"}
_PERCENT_OF: _Phrases = {("percent", "of"): "percent of", ("per", "cent", "of"): "percent of"}
_PREFIX: _Phrases = {
    ("square", "root", "of"): "square root", ("the", "square", "root", "of"): "square root",
    ("cube", "root", "of"): "cube root", ("the", "cube", "root", "of"): "cube root", ("half", "of"): "half",
    ("a", "half", "of"): "half", ("one", "half", "of"): "half", ("a", "third", "of"): "third", ("one", "third", "of"): "third",
    ("third", "of"): "third", ("a", "quarter", "of"): "quarter", ("one", "quarter", "of"): "quarter", ("quarter", "of"): "quarter",
    ("a", "fifth", "of"): "fifth", ("a", "tenth", "of"): "tenth", ("two", "thirds", "of"): "two thirds",
    ("three", "quarters", "of"): "three quarters", ("double",): "double", ("twice",): "double", ("triple",): "triple",
}
_SPLIT_FORMS: dict[tuple[str, ...], tuple[frozenset[str], str, bool]] = {
    # lead words: (the word between the two operands, the operation, whether the operands are swapped)
    ("add",): (frozenset({"and", "to"}), "plus", False),
    ("sum", "of"): (frozenset({"and"}), "plus", False),
    ("the", "sum", "of"): (frozenset({"and"}), "plus", False),
    ("subtract",): (frozenset({"from"}), "minus", True),
    ("take",): (frozenset({"from"}), "minus", True),
    ("take", "away"): (frozenset({"from"}), "minus", True),
    ("multiply",): (frozenset({"by", "and"}), "times", False),
    ("product", "of"): (frozenset({"and"}), "times", False),
    ("the", "product", "of"): (frozenset({"and"}), "times", False),
    ("divide",): (frozenset({"by"}), "divided by", False),
}
_LEADS = (("what", "is"), ("whats",), ("how", "much", "is"), ("calculate",))
_SYMBOLS = {"+": "plus", "-": "minus", "\u2212": "minus", "*": "times", "\u00d7": "times", "/": "divided by", "\u00f7": "divided by",
            "^": "to the power of", "%": "percent"}


def _words_of(*phrase_sets: Iterable[tuple[str, ...]]) -> frozenset[str]:
    return frozenset(word for phrases in phrase_sets for phrase in phrases for word in phrase)


_OPERATORS = (_ADDITIVE, _MULTIPLICATIVE, _NEGATIVE, _POWER, _POSTFIX, _PERCENT_OF, _PREFIX)
_VOCABULARY = NUMBER_WORDS | _words_of(*_OPERATORS, _SPLIT_FORMS, _LEADS, [tuple(connectors) for connectors, _, _ in _SPLIT_FORMS.values()])
_LONGEST = max(len(phrase) for table in _OPERATORS for phrase in table)
_NUMBER_RUN = NUMBER_WORDS - _words_of(_NEGATIVE)  # a sign is read as an operation: "minus 2 squared" is -(2**2)
_LEXEME = re.compile(r"(\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)|([a-z]+)|([-\u2212+*\u00d7/\u00f7^%])|([\s,.?!;:=]+)|(.)")


def parse(expression: str) -> Expr:
    """The arithmetic in ``expression``. Raises :class:`NotMaths`, or :class:`MathsError` when it is too long to read."""
    tokens = _tokens(expression)
    expr = _split_form(tokens) or _Parser(tokens).whole(_Parser.expression)
    if isinstance(expr, Num) or (isinstance(expr, Unary) and expr.op == "minus" and isinstance(expr.operand, Num)):
        raise NotMaths(f"a lone number: {expression!r}")
    return expr


_ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
             "eleventh": 11, "twelfth": 12}
_ORDINAL_POWER = re.compile(r"\bto the (" + "|".join(_ORDINALS) + r"|\d+(?:st|nd|rd|th))(?: power)?\b")
_TAKE_AWAY = re.compile(r"^(?:take|subtract) (.+?) (?:away )?from (.+)$|^(.+?) (?:subtracted|taken away|taken) from (.+)$")


def _rewrite(text: str) -> str:
    """Word orders the grammar does not follow, said its way: "to the eighth power" (to the power of 8), "take 19 away
    from 60" and "19 subtracted from 60" (60 minus 19)."""
    text = _ORDINAL_POWER.sub(lambda m: f"to the power of {_ORDINALS.get(m[1]) or m[1][:-2]}", text)
    taken = _TAKE_AWAY.match(text)
    if taken:
        amount, whole = (taken[1], taken[2]) if taken[1] else (taken[3], taken[4])
        text = f"{whole} minus {amount}"
    return text


def _tokens(expression: str) -> list[str]:
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", re.sub(r"what['\u2019]s", "what is", expression.lower()))  # twenty-five
    text = _rewrite(" ".join(text.split()))
    raw: list[str] = []
    for lexeme in _LEXEME.finditer(text):
        number, word, symbol, _space, other = lexeme.groups()
        if other or (word and word not in _VOCABULARY):
            raise NotMaths(f"not arithmetic: {expression!r}")
        if number and len(number) > MAX_NUMBER_CHARS:
            raise MathsError("That number is too long for me.")
        if number or word or symbol:
            raw.append(number or word or symbol)
        if len(raw) > MAX_TOKENS:  # checked as it is read: the rest is never looked at
            raise MathsError("That is too long a sum for me.")
    tokens = [w for token in raw for w in _SYMBOLS.get(token, token).split()]
    for lead in _LEADS:
        if tuple(tokens[:len(lead)]) == lead:
            return tokens[len(lead):]
    return tokens


def _split_form(tokens: list[str]) -> Expr | None:
    """"add 2 and 3", "subtract 4 from 10", "the product of 6 and 7": two operands around a connecting word."""
    for lead, (connectors, op, swapped) in _SPLIT_FORMS.items():
        if tuple(tokens[:len(lead)]) != lead:
            continue
        for k in range(len(tokens) - 1, len(lead), -1):  # the last connector that leaves two operands
            if tokens[k] not in connectors:
                continue
            try:
                left = _Parser(tokens[len(lead):k]).whole(_Parser.unary)
                right = _Parser(tokens[k + 1:]).whole(_Parser.unary)
            except NotMaths:
                continue
            return Binary(op, right, left) if swapped else Binary(op, left, right)
    return None


class _Parser:
    """Recursive descent, one method per level of precedence, loosest first."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def whole(self, level: Callable[[_Parser], Expr]) -> Expr:
        expr = level(self)
        if self.i != len(self.tokens):
            raise NotMaths(f"unexpected {self.tokens[self.i]!r}")
        return expr

    def expression(self) -> Expr:
        expr = self.term()
        while op := self._match(_ADDITIVE):
            expr = Binary(op, expr, self.term())
        return expr

    def term(self) -> Expr:
        expr = self.unary()
        while op := self._match(_MULTIPLICATIVE):
            expr = Binary(op, expr, self.unary())
        return expr

    def unary(self) -> Expr:
        if op := self._match(_NEGATIVE):
            return Unary(op, self.unary())
        return self.power()

    def power(self) -> Expr:
        base = self.postfix()
        if op := self._match(_POWER):
            return Binary(op, base, self.unary())  # right-associative, and the exponent may be negative
        return base

    def postfix(self) -> Expr:
        expr = self.primary()
        while op := self._match(_POSTFIX):
            expr = Unary(op, expr)
        if op := self._match(_PERCENT_OF):
            return Binary(op, expr, self.unary())
        return expr

    def primary(self) -> Expr:
        if op := self._match(_PREFIX):
            return Unary(op, self.unary())
        return self.number()

    def number(self) -> Num:
        """The longest run of words from here that reads as one number ("one hundred and twenty three")."""
        end = self.i
        while end < len(self.tokens) and (self.tokens[end][0].isdigit() or self.tokens[end] in _NUMBER_RUN):
            end += 1
        for stop in range(end, self.i, -1):
            if (value := parse_number(" ".join(self.tokens[self.i:stop]))) is not None:
                self.i = stop
                return Num(value)
        raise NotMaths(f"no number at {' '.join(self.tokens[self.i:])!r}")

    def _match(self, phrases: _Phrases) -> str | None:
        """Consume the longest phrase of ``phrases`` that starts here; its operation, or None."""
        for length in range(min(_LONGEST, len(self.tokens) - self.i), 0, -1):
            if (op := phrases.get(tuple(self.tokens[self.i:self.i + length]))) is not None:
                self.i += length
                return op
        return None


def evaluate(expr: Expr) -> float:
    """The value of ``expr``. Raises :class:`MathsError` (division by zero, a number too big...)."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Unary):
        value = _UNARY[expr.op][0](evaluate(expr.operand))
    else:
        value = _BINARY[expr.op][0](evaluate(expr.left), evaluate(expr.right))
    if value != 0 and not -MAX_MAGNITUDE <= math.log10(abs(value)) <= MAX_MAGNITUDE:
        raise MathsError("That number is too big for me." if abs(value) > 1 else "That number is too small for me.")
    return value


def say(expr: Expr) -> str:
    """The question in words and digits, as the answer restates it ("the square root of 144")."""
    if isinstance(expr, Num):
        return say_number(expr.value)
    if isinstance(expr, Unary):
        return _UNARY[expr.op][1].format(say(expr.operand))
    return _BINARY[expr.op][1].format(say(expr.left), say(expr.right))


def answer(expression: str) -> str:
    """The spoken answer: "17 times 3 is 51.", "10 divided by 3 is about 3.33." Raises NotMaths or MathsError."""
    expr = parse(expression)
    value = evaluate(expr)
    question = say(expr)
    verb = "is about" if approximately(value, exact=True) else "is"
    return f"{question[:1].upper()}{question[1:]} {verb} {say_number(value, exact=True)}."


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise MathsError("You can't divide by zero.")
    return a / b


def _power(base: float, exponent: float) -> float:
    if base == 0:
        return _divide(1, 0) if exponent < 0 else float(exponent == 0)
    if base < 0 and exponent != int(exponent):
        raise MathsError("A negative number has no real power with a fraction for its exponent.")
    magnitude = exponent * math.log10(abs(base))
    if magnitude > MAX_MAGNITUDE:
        raise MathsError("That number is too big for me.")
    if magnitude < -MAX_MAGNITUDE:
        raise MathsError("That number is too small for me.")
    return float(base**exponent)


def _square_root(x: float) -> float:
    if x < 0:
        raise MathsError("A negative number has no real square root.")
    return math.sqrt(x)


_UNARY: dict[str, tuple[Callable[[float], float], str]] = {
    "minus": (lambda x: -x, "minus {}"),
    "squared": (lambda x: _power(x, 2), "{} squared"),
    "cubed": (lambda x: _power(x, 3), "{} cubed"),
    "square root": (_square_root, "the square root of {}"),
    "cube root": (math.cbrt, "the cube root of {}"),
    "half": (lambda x: x / 2, "half of {}"),
    "third": (lambda x: x / 3, "a third of {}"),
    "quarter": (lambda x: x / 4, "a quarter of {}"),
    "fifth": (lambda x: x / 5, "a fifth of {}"),
    "tenth": (lambda x: x / 10, "a tenth of {}"),
    "two thirds": (lambda x: x * 2 / 3, "two thirds of {}"),
    "three quarters": (lambda x: x * 3 / 4, "three quarters of {}"),
    "double": (lambda x: x * 2, "double {}"),
    "triple": (lambda x: x * 3, "triple {}"),
}
_BINARY: dict[str, tuple[Callable[[float, float], float], str]] = {
    "plus": (lambda a, b: a + b, "{} plus {}"),
    "minus": (lambda a, b: a - b, "{} minus {}"),
    "times": (lambda a, b: a * b, "{} times {}"),
    "divided by": (_divide, "{} divided by {}"),
    "percent of": (lambda a, b: a / 100 * b, "{} percent of {}"),
    "to the power of": (_power, "{} to the power of {}"),
}
