"""Numbers as the recogniser writes them (skills/numbers.py), and as the answers say them."""

from __future__ import annotations

import pytest

from harken.skills.numbers import approximately, parse_number, say_number


@pytest.mark.parametrize(("heard", "value"), [
    ("5", 5), ("5.5", 5.5), ("1,000", 1000), ("1,000,000", 1_000_000), ("-3", -3), ("Five.", 5),
    ("five", 5), ("zero", 0), ("twelve", 12), ("twenty five", 25), ("twenty-five", 25), ("ninety nine", 99),
    ("a hundred", 100), ("one hundred and twenty three", 123), ("three thousand four hundred", 3400),
    ("two thousand and twenty four", 2024), ("fifteen hundred", 1500), ("a million", 1_000_000),
    ("2.5 million", 2_500_000), ("one point two billion", 1_200_000_000),
    ("two point five", 2.5), ("zero point seven five", 0.75), ("point five", 0.5),
    ("half", 0.5), ("a half", 0.5), ("a quarter", 0.25), ("three quarters", 0.75), ("a third", 1 / 3), ("two thirds", 2 / 3),
    ("two and a half", 2.5), ("1 and a half", 1.5), ("two and three quarters", 2.75), ("a hundred and a half", 100.5),
    ("minus three", -3), ("negative three", -3), ("minus two and a half", -2.5),
])
def test_a_spoken_number_is_read(heard, value):
    assert parse_number(heard) == pytest.approx(value)


@pytest.mark.parametrize("heard", [
    "", "the", "pounds", "oh", "a", "and", "five five", "one hundred and", "a million thousand", "5-3", "minus", "point",
    "twenty fifteen pounds", "thousand", "5 minutes", "first",
])
def test_words_that_are_not_one_number_are_not_read_as_one(heard):
    assert parse_number(heard) is None


@pytest.mark.parametrize(("value", "said", "rounded"), [
    (51, "51", False),
    (1_000_000, "1000000", False),
    (2.0, "2", False),
    (0.0, "0", False),
    (-4.5, "minus 4.5", False),
    (0.1 + 0.2, "0.3", False),  # floating-point noise is not "about"
    (3.3333, "3.33", True),
    (37.777777, "37.8", True),
    (453.59237, "453.6", True),
    (2267.96, "2268", True),
    (0.0283495, "0.0283", True),
    (1 / 3, "0.333", True),
    (12.25, "12.3", True),  # halves round up, as people round them
    (273.15, "273.2", True),
    (9.999, "10", True),
    (123_456_789, "123456789", False),
    (3e9, "3 billion", False),
    (1.2345e9, "1.23 billion", True),
    (2**40, "1.1 trillion", True),
    (1e20, "1 times 10 to the power of 20", False),
    (1.234e-5, "1.23 times 10 to the power of minus 5", True),
])
def test_a_number_is_said_as_a_person_would_round_it(value, said, rounded):
    assert say_number(value) == said
    assert approximately(value) is rounded


@pytest.mark.parametrize("value", [0, 7, 19, 42, 100, 2024, 65_536, 999_999, -12, 0.5, 2.5, 12.5])
def test_what_is_said_reads_back_as_the_same_number(value):
    assert parse_number(say_number(value)) == value


def test_a_number_that_is_not_finite_cannot_be_said():
    with pytest.raises(ValueError):
        say_number(float("inf"))
