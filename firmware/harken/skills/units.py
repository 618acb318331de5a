"""Unit conversions as people ask them: "how many grams in a pound", "what's 100 fahrenheit in celsius".

This module is vocabulary only: how people say unit names (singular and
plural, British and American spellings, the abbreviations a recogniser writes)
and which pint unit each one means. Every conversion factor comes from pint's
definitions; none is written here.

pint's ``pint``, ``quart``, ``gallon`` and ``fluid_ounce`` are the US measures,
so "a gallon" is a US gallon, and the answer says so ("1 US gallon is about
3.79 litres"); "imperial pint" and "imperial gallon" (or "UK ...") are the British
ones. Temperatures are converted as readings, not differences: 100 degrees
Fahrenheit is 37.8 degrees Celsius.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from typing import TYPE_CHECKING

from harken.errors import HarkenError
from harken.skills.numbers import approximately, parse_number, say_number

if TYPE_CHECKING:
    import pint

_SPOKEN: dict[str, tuple[str, str]] = {
    # pint unit: how the answer says one of it, and more than one (British spelling)
    "millimeter": ("millimetre", "millimetres"), "centimeter": ("centimetre", "centimetres"), "meter": ("metre", "metres"),
    "kilometer": ("kilometre", "kilometres"), "inch": ("inch", "inches"), "foot": ("foot", "feet"), "yard": ("yard", "yards"),
    "mile": ("mile", "miles"), "nautical_mile": ("nautical mile", "nautical miles"),
    "milligram": ("milligram", "milligrams"), "gram": ("gram", "grams"), "kilogram": ("kilogram", "kilograms"),
    "metric_ton": ("tonne", "tonnes"), "ounce": ("ounce", "ounces"), "pound": ("pound", "pounds"), "stone": ("stone", "stone"),
    "milliliter": ("millilitre", "millilitres"), "centiliter": ("centilitre", "centilitres"), "liter": ("litre", "litres"),
    "cup": ("cup", "cups"), "pint": ("US pint", "US pints"), "quart": ("US quart", "US quarts"), "gallon": ("US gallon", "US gallons"),
    "imperial_pint": ("imperial pint", "imperial pints"), "imperial_gallon": ("imperial gallon", "imperial gallons"),
    "tablespoon": ("tablespoon", "tablespoons"), "teaspoon": ("teaspoon", "teaspoons"),
    "fluid_ounce": ("US fluid ounce", "US fluid ounces"),
    "centimeter ** 3": ("cubic centimetre", "cubic centimetres"), "meter ** 3": ("cubic metre", "cubic metres"),
    "degC": ("degree Celsius", "degrees Celsius"), "degF": ("degree Fahrenheit", "degrees Fahrenheit"), "kelvin": ("kelvin", "kelvin"),
    "kilometer / hour": ("kilometre per hour", "kilometres per hour"), "mile / hour": ("mile per hour", "miles per hour"),
    "meter / second": ("metre per second", "metres per second"), "knot": ("knot", "knots"),
    "second": ("second", "seconds"), "minute": ("minute", "minutes"), "hour": ("hour", "hours"), "day": ("day", "days"),
    "week": ("week", "weeks"), "month": ("month", "months"), "year": ("year", "years"),
    "bit": ("bit", "bits"), "byte": ("byte", "bytes"), "kilobit": ("kilobit", "kilobits"), "megabit": ("megabit", "megabits"),
    "gigabit": ("gigabit", "gigabits"), "kilobyte": ("kilobyte", "kilobytes"), "megabyte": ("megabyte", "megabytes"),
    "gigabyte": ("gigabyte", "gigabytes"), "terabyte": ("terabyte", "terabytes"), "kibibyte": ("kibibyte", "kibibytes"),
    "mebibyte": ("mebibyte", "mebibytes"), "gibibyte": ("gibibyte", "gibibytes"), "tebibyte": ("tebibyte", "tebibytes"),
}
_ALIASES: dict[str, str] = {
    # other words for a unit than its spoken names and their American spellings
    "mm": "millimeter", "cm": "centimeter", "km": "kilometer", "kms": "kilometer", "ft": "foot", "yd": "yard", "yds": "yard",
    "nmi": "nautical_mile",
    "mg": "milligram", "g": "gram", "kg": "kilogram", "kgs": "kilogram", "kilo": "kilogram", "kilos": "kilogram",
    "metric ton": "metric_ton", "metric tons": "metric_ton", "oz": "ounce", "lb": "pound", "lbs": "pound", "stones": "stone",
    "ml": "milliliter", "cl": "centiliter", "pint": "pint", "pints": "pint", "quart": "quart", "quarts": "quart",
    "gallon": "gallon", "gallons": "gallon", "uk pint": "imperial_pint", "uk pints": "imperial_pint",
    "uk gallon": "imperial_gallon", "uk gallons": "imperial_gallon", "tbsp": "tablespoon", "tsp": "teaspoon",
    "fluid ounce": "fluid_ounce", "fluid ounces": "fluid_ounce", "fl oz": "fluid_ounce", "cc": "centimeter ** 3",
    "celsius": "degC", "centigrade": "degC", "degree centigrade": "degC", "degrees centigrade": "degC", "degrees c": "degC",
    "fahrenheit": "degF", "degrees f": "degF", "kelvins": "kelvin", "degrees kelvin": "kelvin",
    "kph": "kilometer / hour", "kmh": "kilometer / hour", "kmph": "kilometer / hour", "km per hour": "kilometer / hour",
    "km per h": "kilometer / hour", "mph": "mile / hour", "m per s": "meter / second",
    "sec": "second", "secs": "second", "min": "minute", "mins": "minute", "hr": "hour", "hrs": "hour", "yr": "year", "yrs": "year",
    "kb": "kilobyte", "mb": "megabyte", "meg": "megabyte", "megs": "megabyte", "gb": "gigabyte", "gig": "gigabyte",
    "gigs": "gigabyte", "tb": "terabyte", "kib": "kibibyte", "mib": "mebibyte", "gib": "gibibyte", "tib": "tebibyte",
}
_KINDS = (("meter", "a length"), ("gram", "a mass"), ("liter", "a volume"), ("kelvin", "a temperature"), ("meter / second", "a speed"),
          ("second", "a time"), ("byte", "an amount of data"))


_US = ("cup", "pint", "quart", "gallon", "fluid ounce", "tablespoon", "teaspoon")
"""Measures pint takes as the US ones, which a person may also call so ("a US cup")."""
_BRITISH = {"pint": "imperial_pint", "gallon": "imperial_gallon"}


def _vocabulary() -> dict[str, str]:
    """Spoken names, their American spellings and "an hour"/"a second" forms of speeds, then the aliases, plurals of
    the short forms ("mls", "kgs") and the US and British measures named as such."""
    words: dict[str, str] = {}
    for unit, names in _SPOKEN.items():
        for name in names:
            name = name.lower()
            for spelling in {name, name.replace("metre", "meter").replace("litre", "liter")}:
                words[spelling] = unit
                words[spelling.replace(" per hour", " an hour").replace(" per second", " a second")] = unit
    words |= _ALIASES
    words |= {f"{short}s": unit for short, unit in _ALIASES.items() if len(short) <= 3 and f"{short}s" not in words}
    for name in _US:
        for form in (name, f"{name}s"):
            if form in words:
                words[f"us {form}"] = words[form]
    for name, unit in _BRITISH.items():
        for form in (name, f"{name}s"):
            for country in ("british", "imperial", "english"):
                words[f"{country} {form}"] = unit
    return words


UNITS: dict[str, str] = _vocabulary()
"""Unit words as a person says them and a recogniser writes them (normalised: lower case, no punctuation) → pint unit."""


class UnitsError(HarkenError, ValueError):
    """A conversion that cannot be made; ``str()`` is the sentence to say."""


@functools.cache
def _registry() -> pint.UnitRegistry:
    """pint is imported here, not at the top: the router reads questions with this module and never needs it.

    numpy is optional to pint, and every answer here is a plain float. In the skills worker, where nothing has
    imported numpy, pint is imported with numpy out of its sight: the worker stays 18 MB smaller (34 MB against 46
    with the registry built, measured on the running worker). A plugin that imports numpy later still gets it. The
    registry is built once (a tenth of a second or more)."""
    hide = "numpy" not in sys.modules
    if hide:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # importing it now raises ImportError: pint does without
    try:
        import pint
    finally:
        if hide:
            del sys.modules["numpy"]
    return pint.UnitRegistry()


def _normalise(text: str) -> str:
    """Lower case, "°F" as "degrees f", "km/h" as "km per h", "5km" as "5 km", punctuation gone but "1,000.5" kept."""
    text = text.lower().replace("\u00b0", " degrees ").replace("/", " per ").replace("'", "").replace("\u2019", "")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    text = re.sub(r"(?<=\d)(?=[a-z])", " ", text)
    text = re.sub(r"(?<!\d)[.,]|[.,](?!\d)|-(?![\d.])|[^a-z0-9.,\s-]", " ", text)
    return " ".join(text.split())


def parse_unit(text: str) -> str | None:
    """The pint unit a phrase names ("pounds", "degrees fahrenheit", "km/h"), else None."""
    return UNITS.get(_normalise(text))


COMPOUND = re.compile(r"^(?P<big>.+?) (?:foot|feet|ft) (?P<small>.+?)(?: inch| inches| in)?$"
                      r"|^(?P<stone>.+?) stones? (?P<pounds>.+?)(?: pounds?| lbs?)?$")
"""A height or a weight said in two units, as people say theirs: "six foot two", "5 feet 10 inches", "11 stone 4"."""


def parse_quantity(text: str) -> tuple[float, str] | None:
    """The amount and pint unit of "a pound", "5 lbs", "one and a half cups", "half a litre", "100°F", "six foot two"
    (in inches), "11 stone 4" (in pounds); else None."""
    compound = COMPOUND.match(_normalise(text))
    if compound:
        big, small = (compound["big"], compound["small"]) if compound["big"] else (compound["stone"], compound["pounds"])
        whole, part = parse_number(big), parse_number(small)
        if whole is not None and part is not None:
            return (whole * 12 + part, "inch") if compound["big"] else (whole * 14 + part, "pound")
    words = _normalise(text).split()
    for k in range(1, len(words)):
        unit = UNITS.get(" ".join(words[k:]))
        if unit is not None and (amount := _amount(words[:k])) is not None:
            return amount, unit
    return None


def _amount(words: list[str]) -> float | None:
    """"a", "an", "five", "1.5", "half a", "a quarter of a"."""
    if words in (["a"], ["an"], ["the"], ["one"]):  # "how many feet are in the mile", as a recogniser may hear "a"
        return 1.0
    if words[-1] in ("a", "an"):  # "half a cup", "a third of a cup"
        words = words[:-2] if words[-2:-1] == ["of"] else words[:-1]
    return parse_number(" ".join(words))


_QUESTIONS = (
    re.compile(r"how (?:many|much) (?P<target>.+?) (?:are there in|is there in|are in|is in|in|is|are|makes?|equals?|go into) (?P<source>.+)"),
    re.compile(r"(?:(?:whats|what is|what are|how much is|how much are|convert) )?(?P<source>.+?) (?:in|to|into|as) (?P<target>.+)"),
)


MISHEARD = 0.7
"""How alike (difflib's ratio) a word must be to a unit's name to be taken for it: a recogniser writes "grants" for
"grams". Only the unit asked for, in a question whose other unit was heard right, is read this way."""


def _misheard(phrase: str) -> str | None:
    import difflib

    if " " in phrase or len(phrase) < 4:
        return None
    close = difflib.get_close_matches(phrase, [word for word in UNITS if len(word) >= 4], n=1, cutoff=MISHEARD)
    return UNITS[close[0]] if close else None


def question(text: str) -> tuple[float, str, str] | None:
    """(amount, source unit, target unit) of a whole conversion question ("how many grams in a pound",
    "convert 5 pounds to grams", "what's 100 fahrenheit in celsius"), else None."""
    text = _normalise(text)
    for pattern in _QUESTIONS:
        if not (match := pattern.fullmatch(text)):
            continue
        source = parse_quantity(match["source"]) or ((1.0, unit) if (unit := UNITS.get(match["source"])) else None)
        target = UNITS.get(match["target"]) or (_misheard(match["target"]) if source is not None else None)
        if target is not None and source is not None:
            return source[0], source[1], target
    return None


def convert(amount: float, source: str, target: str) -> str:
    """The spoken answer to converting ``amount`` of ``source`` to ``target`` (values of :data:`UNITS`):
    "1 pound is about 453.6 grams." Raises :class:`UnitsError` for units that measure different things."""
    for unit in (source, target):
        if unit not in _SPOKEN:
            raise UnitsError(f"I don't know the unit {unit}.")
    registry = _registry()  # first: it imports pint (see there)
    from pint import DimensionalityError

    quantity = registry.Quantity(amount, source)
    try:
        value = float(quantity.to(target).magnitude)
    except DimensionalityError:
        raise UnitsError(f"I can't convert {_SPOKEN[source][1]} to {_SPOKEN[target][1]}: "
                         f"one is {_kind(source)} and the other {_kind(target)}.") from None
    if not (math.isfinite(amount) and math.isfinite(value)):
        raise UnitsError("That number is too big for me.")
    if _kind(source) == "a temperature" and quantity.to("kelvin").magnitude < 0:
        raise UnitsError("That is colder than absolute zero, and nothing is.")
    said = f"{_say(amount, source)} is {'about ' if approximately(value) else ''}{_say(value, target)}."
    return said[:1].upper() + said[1:]


def _say(amount: float, unit: str) -> str:
    number = say_number(amount)
    one, many = _SPOKEN[unit]
    return f"{number} {one if number in ('1', 'minus 1') else many}"


@functools.cache
def _kind(unit: str) -> str:
    """What a unit measures, as the sentence that refuses a conversion says it ("a mass")."""
    registry = _registry()
    dimensionality = registry.get_dimensionality(unit)
    return next(kind for example, kind in _KINDS if registry.get_dimensionality(example) == dimensionality)
