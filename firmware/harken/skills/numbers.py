"""Numbers as a speech recogniser writes them, and as a person says them back.

The recogniser writes "25", "twenty-five", "twenty five" or "1,000" for the same
words, so the skills that compute (maths, units) read them all through
:func:`parse_number`. An answer is spoken by a voice that reads digits well, so
:func:`say_number` writes digits, rounded the way a person would round them
aloud ("3.33", "453.6"); :func:`approximately` tells the caller to add "about".
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fifth": 5, "fifths": 5,
    "eighth": 8, "eighths": 8, "tenth": 10, "tenths": 10,
}
_DECIMAL_DIGITS = {**{w: str(v) for w, v in _UNITS.items() if v < 10}, "oh": "0"}
_SIGNS = {"minus", "negative"}
_ARTICLES = {"a", "an"}

NUMBER_WORDS = frozenset([*_UNITS, *_TENS, *_SCALES, *_DENOMINATORS, *_SIGNS, *_ARTICLES, "hundred", "and", "point", "oh"])
"""Every word :func:`parse_number` reads (digits aside): a caller finds where a number may run in a sentence."""

_DIGITS = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SPOKEN_SCALES = ((1e12, "trillion"), (1e9, "billion"))
_MAX_SCALED = 1e15  # from here on, and below _MIN_PLAIN, a number is said as a power of ten
_MIN_PLAIN = 1e-4


def parse_number(text: str) -> float | None:
    """The number that the whole of ``text`` is ("5.5", "1,000", "twenty-five", "two and a half"), else None."""
    words = _words(text)
    sign = 1.0
    if words and words[0] in _SIGNS:
        sign, words = -1.0, words[1:]
    value = _unsigned(words)
    return None if value is None else sign * value


def _words(text: str) -> list[str]:
    text = _THOUSANDS.sub("", text.lower().strip().rstrip(".?!,"))
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # twenty-five
    text = re.sub(r"(?<![\w.])-(?=[\d.])", "minus ", text)  # -3
    return text.replace(",", " ").split()


def _unsigned(words: list[str]) -> float | None:
    if not words:
        return None
    if "point" in words:
        return _decimal(words)
    if (fraction := _fraction(words)) is not None:
        return fraction
    for k in range(len(words) - 1, 0, -1):  # "two and a half", "one hundred and three quarters"
        if words[k] == "and" and (fraction := _fraction(words[k + 1:])) is not None and fraction < 1:
            whole = _cardinal(words[:k])
            return None if whole is None else whole + fraction
    return _cardinal(words)


def _fraction(words: list[str]) -> float | None:
    """"half", "a quarter", "three quarters", "two thirds"."""
    if not words or words[-1] not in _DENOMINATORS:
        return None
    head = words[:-1]
    numerator = 1.0 if head in ([], ["a"], ["an"]) else _cardinal(head)
    return None if numerator is None else numerator / _DENOMINATORS[words[-1]]


def _decimal(words: list[str]) -> float | None:
    """"two point five", "point seven five", "one point two million"."""
    k = words.index("point")
    whole = _cardinal(words[:k]) if k else 0.0
    tail = words[k + 1:]
    scale = 1.0
    if tail and tail[-1] in _SCALES:
        scale, tail = _SCALES[tail[-1]], tail[:-1]
    if whole is None or whole != int(whole) or not tail or any(w not in _DECIMAL_DIGITS for w in tail):
        return None
    return float(f"{int(whole)}.{''.join(_DECIMAL_DIGITS[w] for w in tail)}") * scale


def _cardinal(words: list[str]) -> float | None:
    """Whole numbers: "1000", "2.5 million", "three thousand four hundred", "one hundred and twenty three"."""
    total, i, last_scale = 0.0, 0, math.inf
    while i < len(words):
        group, i = _group(words, i)
        if group is None:
            return None
        if i == len(words):
            return total + group
        scale = _SCALES.get(words[i], math.inf)
        if scale >= last_scale:
            return None  # not a scale word, or "a million thousand"
        total, last_scale, i = total + group * scale, scale, i + 1
        if i < len(words) and words[i] == "and":
            i += 1
            if i == len(words):
                return None
    return total if words else None


def _group(words: list[str], i: int) -> tuple[float | None, int]:
    """A number below a thousand starting at ``words[i]`` (or digits), and the index after it."""
    head, i = _below_hundred(words, i)
    if head is None or i == len(words) or words[i] != "hundred":
        return head, i
    value, i = head * 100, i + 1
    joined = i < len(words) and words[i] == "and"
    tail, j = _below_hundred(words, i + joined)
    if tail is not None:
        return value + tail, j
    return (None, i) if joined else (value, i)


def _below_hundred(words: list[str], i: int) -> tuple[float | None, int]:
    if i >= len(words):
        return None, i
    word = words[i]
    following = words[i + 1] if i + 1 < len(words) else ""
    if _DIGITS.fullmatch(word):
        return float(word), i + 1
    if word in _UNITS:
        return float(_UNITS[word]), i + 1
    if word in _TENS:
        unit = _UNITS.get(following, 0)
        return (_TENS[word] + unit, i + 2) if 0 < unit < 10 else (_TENS[word], i + 1)
    if word in _ARTICLES and (following == "hundred" or following in _SCALES):
        return 1.0, i + 1
    return None, i


def say_number(x: float, exact: bool = False) -> str:
    """How a person says ``x`` to a voice that reads digits: "51", "3.33", "453.6", "0.0283", "minus 4.5",
    "1.2 billion". Whether that was rounded is :func:`approximately`. ``exact``: a result with at most two decimals
    is said whole ("99 divided by 4 is 24.75", where a measurement would be "about 24.8")."""
    return _spoken_exactly(x)[0] if exact else _spoken(x)[0]


def approximately(x: float, exact: bool = False) -> bool:
    """Whether :func:`say_number` rounded ``x`` (so the caller says "about")."""
    said = (_spoken_exactly(x) if exact else _spoken(x))[1]
    return not math.isclose(said, x, rel_tol=1e-9, abs_tol=1e-12)


def _spoken_exactly(x: float) -> tuple[str, float]:
    two = round(x, 2)
    if 0.01 <= abs(x) < 1e9 and math.isclose(two, x, rel_tol=1e-12, abs_tol=1e-9):
        return ("minus " if two < 0 else "") + _plain(abs(two)), two
    return _spoken(x)


def _spoken(x: float) -> tuple[str, float]:
    """The words for ``x`` and the value they say."""
    if not math.isfinite(x):
        raise ValueError(f"{x} cannot be said as a number")
    if x < 0:
        words, value = _spoken(-x)
        return ("0", 0.0) if value == 0 else (f"minus {words}", -value)
    if x == 0:
        return "0", 0.0
    if x >= _MAX_SCALED or x < _MIN_PLAIN:
        return _power_of_ten(x)
    rounded = float(f"{x:.3g}")
    for scale, name in _SPOKEN_SCALES:
        if rounded >= scale:
            return f"{_plain(rounded / scale)} {name}", rounded
    decimals = max(1, 2 - math.floor(math.log10(x)))  # 3 significant figures, but never fewer than 1 decimal
    rounded = float(Decimal(repr(x)).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP))  # as written, halves up: 12.25 → 12.3
    return _plain(rounded), rounded


def _plain(x: float) -> str:
    """Digits without separators or trailing zeros ("2", "2.5")."""
    return f"{x:f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _power_of_ten(x: float) -> tuple[str, float]:
    mantissa, exponent = f"{x:.2e}".split("e")
    power = int(exponent)
    words = f"{_plain(float(mantissa))} times 10 to the power of {say_number(power)}"
    return words, float(mantissa) * 10.0 ** power
