"""Unit conversions asked aloud (skills/units.py), converted by the real pint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harken.skills import units
from harken.skills.units import UNITS, UnitsError


def spoken_answer(asked: str) -> str:
    recognised = units.question(asked)
    assert recognised is not None, f"not recognised as a conversion: {asked!r}"
    return units.convert(*recognised)


@pytest.mark.parametrize(("asked", "said"), [
    ("how many grams in a pound", "1 pound is about 453.6 grams."),
    ("How many grams are in a pound?", "1 pound is about 453.6 grams."),
    ("how many grams is 5 pounds", "5 pounds is about 2268 grams."),
    ("convert 5 pounds to grams", "5 pounds is about 2268 grams."),
    ("what is 5 pounds in grams", "5 pounds is about 2268 grams."),
    ("5 lbs in grams", "5 pounds is about 2268 grams."),
    ("what's half a pound in grams", "0.5 pounds is about 226.8 grams."),
    ("how many ounces make a pound", "1 pound is 16 ounces."),
    ("what is 10 stone in kilograms", "10 stone is about 63.5 kilograms."),
    ("what's 100 fahrenheit in celsius", "100 degrees Fahrenheit is about 37.8 degrees Celsius."),
    ("What's 100°F in °C?", "100 degrees Fahrenheit is about 37.8 degrees Celsius."),
    ("convert twenty degrees celsius to fahrenheit", "20 degrees Celsius is 68 degrees Fahrenheit."),
    ("what is minus 40 centigrade in fahrenheit", "Minus 40 degrees Celsius is minus 40 degrees Fahrenheit."),
    ("convert 0 celsius to kelvin", "0 degrees Celsius is about 273.2 kelvin."),
    ("what is five kilometres in miles", "5 kilometres is about 3.11 miles."),
    ("what is 5km in miles", "5 kilometres is about 3.11 miles."),
    ("how many feet in a mile", "1 mile is 5280 feet."),
    ("what is 6 feet in centimeters", "6 feet is about 182.9 centimetres."),
    ("how many inches in a foot", "1 foot is 12 inches."),
    ("convert 1,000 metres to feet", "1000 metres is about 3280.8 feet."),
    ("how many metres in a nautical mile", "1 nautical mile is 1852 metres."),
    ("how many cups in a litre", "1 litre is about 4.23 cups."),
    ("how many cups in a liter", "1 litre is about 4.23 cups."),
    ("convert one and a half cups to millilitres", "1.5 cups is about 354.9 millilitres."),
    ("convert 1.5 cups to ml", "1.5 cups is about 354.9 millilitres."),
    ("how many tablespoons in a cup", "1 cup is 16 tablespoons."),
    ("how many teaspoons in a tablespoon", "1 tablespoon is 3 teaspoons."),
    ("how many litres in a gallon", "1 US gallon is about 3.79 litres."),
    ("how many litres are in an imperial gallon", "1 imperial gallon is about 4.55 litres."),
    ("how many pints in a gallon", "1 US gallon is 8 US pints."),
    ("how many millilitres in a uk pint", "1 imperial pint is about 568.3 millilitres."),
    ("how many litres in a cubic metre", "1 cubic metre is 1000 litres."),
    ("convert 60 mph to km/h", "60 miles per hour is about 96.6 kilometres per hour."),
    ("what is 30 miles an hour in kilometres per hour", "30 miles per hour is about 48.3 kilometres per hour."),
    ("convert 10 knots to mph", "10 knots is about 11.5 miles per hour."),
    ("what is 100 kph in metres per second", "100 kilometres per hour is about 27.8 metres per second."),
    ("how many seconds in a day", "1 day is 86400 seconds."),
    ("how many minutes in two and a half hours", "2.5 hours is 150 minutes."),
    ("how many weeks in a year", "1 year is about 52.2 weeks."),
    ("how much is 3 gigabytes in megabytes", "3 gigabytes is 3000 megabytes."),
    ("how many bytes in a kilobyte", "1 kilobyte is 1000 bytes."),
    ("how many mebibytes in a gibibyte", "1 gibibyte is 1024 mebibytes."),
    ("how many bits in a byte", "1 byte is 8 bits."),
    ("how many megabytes is a terabyte", "1 terabyte is 1000000 megabytes."),
    ("how many bits in a terabyte", "1 terabyte is 8 trillion bits."),
])
def test_a_conversion_question_is_answered_in_words(asked, said):
    assert spoken_answer(asked) == said


@pytest.mark.parametrize("asked", [
    "what is the capital of france", "how many people live in london", "how many kilometres is a marathon",
    "convert 5 degrees to radians", "what is 2 plus 2", "5 pounds", "how many grams", "what time is it in paris", "",
])
def test_other_questions_are_not_taken_for_conversions(asked):
    assert units.question(asked) is None


@pytest.mark.parametrize(("heard", "quantity"), [
    ("a pound", (1, "pound")), ("an ounce", (1, "ounce")), ("one pound", (1, "pound")), ("5 pounds", (5, "pound")),
    ("5 lbs.", (5, "pound")), ("five kilometres", (5, "kilometer")), ("100 degrees fahrenheit", (100, "degF")),
    ("100°F", (100, "degF")), ("one and a half cups", (1.5, "cup")), ("1.5 cups", (1.5, "cup")), ("a gallon", (1, "gallon")),
    ("half a litre", (0.5, "liter")), ("a quarter of a cup", (0.25, "cup")), ("twenty-five miles per hour", (25, "mile / hour")),
    ("50 km/h", (50, "kilometer / hour")), ("minus 5 degrees celsius", (-5, "degC")), ("2 fl oz", (2, "fluid_ounce")),
    ("the mile", (1.0, "mile")),  # "how many feet are in the mile": a recogniser hears "a" as "the"
])
def test_a_quantity_is_read(heard, quantity):
    assert units.parse_quantity(heard) == quantity


@pytest.mark.parametrize("heard", ["pounds", "5", "5 degrees", "a lot of pounds", "five elephants"])
def test_what_is_not_a_quantity_is_not_read_as_one(heard):
    assert units.parse_quantity(heard) is None


@pytest.mark.parametrize(("heard", "unit"), [
    ("grams", "gram"), ("Kilos", "kilogram"), ("feet", "foot"), ("metres", "meter"), ("meters", "meter"), ("°C", "degC"),
    ("degrees Fahrenheit", "degF"), ("kph", "kilometer / hour"), ("km/h", "kilometer / hour"), ("knots", "knot"),
    ("tonnes", "metric_ton"), ("gigs", "gigabyte"), ("imperial pints", "imperial_pint"), ("degrees", None), ("in", None),
])
def test_a_unit_word_is_read(heard, unit):
    assert units.parse_unit(heard) == unit


@pytest.mark.parametrize(("amount", "source", "target", "said"), [
    (1, "pound", "meter", "I can't convert pounds to metres: one is a mass and the other a length."),
    (3, "liter", "degC", "I can't convert litres to degrees Celsius: one is a volume and the other a temperature."),
    (1, "gigabyte", "hour", "I can't convert gigabytes to hours: one is an amount of data and the other a time."),
    (5, "mile / hour", "mile", "I can't convert miles per hour to miles: one is a speed and the other a length."),
    (-300, "degC", "kelvin", "That is colder than absolute zero, and nothing is."),
])
def test_a_conversion_that_cannot_be_made_is_refused_with_a_sentence(amount, source, target, said):
    with pytest.raises(UnitsError) as refused:
        units.convert(amount, source, target)
    assert str(refused.value) == said


@pytest.mark.parametrize("unit", sorted(set(UNITS.values())))
def test_every_unit_word_means_a_unit_pint_knows_of_a_kind_the_answers_name(unit):
    said = units.convert(2, unit, unit)
    assert said.startswith("2 ") and " is 2 " in said


def test_a_unit_asked_for_is_read_through_a_recogniser_mishearing():
    # "grams" written as "grants"; the other unit was heard right, so the question is still a conversion
    assert units.question("how many grants are in a kilogram") == (1.0, "kilogram", "gram")
    assert units.question("how many grants are in a palm") is None  # two words wrong: not a conversion at all


def test_pint_is_imported_without_numpy_where_nothing_else_needs_it():
    script = ("import sys\nfrom harken.skills import units\nprint(units.convert(1, 'pound', 'gram'))\n"
              "print('numpy' in sys.modules)\nimport numpy\nprint(numpy.zeros(2).sum())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    assert out[:3] == ["1 pound is about 453.6 grams.", "False", "0.0"]  # and numpy still works for whoever imports it after


@pytest.mark.parametrize("heard, unit", [("us cups", "cup"), ("a us cup", None), ("british pint", "imperial_pint"),
                                         ("mls", "milliliter"), ("imperial gallons", "imperial_gallon")])
def test_us_and_british_measures_and_short_plurals_are_named(heard, unit):
    assert units.parse_unit(heard) == unit


@pytest.mark.parametrize("heard, quantity", [("six foot two", (74.0, "inch")), ("5 feet 10 inches", (70.0, "inch")),
                                             ("11 stone 4", (158.0, "pound"))])
def test_a_height_or_weight_in_two_units_is_one_quantity(heard, quantity):
    assert units.parse_quantity(heard) == quantity
