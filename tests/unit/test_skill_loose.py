"""The looser reading behind the templates: what a skill can read in words no template matched, and, as much, what it
must leave to the language model."""

from __future__ import annotations

from datetime import date

import pytest

from harken.skills import loose

TODAY = date(2026, 12, 7)  # a Monday


@pytest.mark.parametrize("heard, reading", [
    ("give me a twenty minute timer", ("timers", "HassStartTimer", {"seconds": 1200.0})),
    ("i want a timer for 3 minutes for the eggs", ("timers", "HassStartTimer", {"seconds": 180.0})),
    ("set the oven timer for 40 minutes", ("timers", "HassStartTimer", {"name": "oven", "seconds": 2400.0})),
    ("could i get a timer going for an hour and a half", ("timers", "HassStartTimer", {"seconds": 5400.0})),
    ("how many minutes are left on my timer", ("timers", "HassTimerStatus", {})),
    ("how long's left on the tea timer", ("timers", "HassTimerStatus", {"name": "tea"})),
    ("put 30 more seconds on the tea timer", ("timers", "HassIncreaseTimer", {"name": "tea", "seconds": 30.0})),
    ("knock 2 minutes off the pasta timer", ("timers", "HassDecreaseTimer", {"name": "pasta", "seconds": 120.0})),
    ("start the tea timer again", ("timers", "HassUnpauseTimer", {"name": "tea"})),
    ("hold the pizza timer", ("timers", "HassPauseTimer", {"name": "pizza"})),
    ("get rid of the tea timer", ("timers", "HassCancelTimer", {"name": "tea"})),
    ("scrap the 5 minute timer", ("timers", "HassCancelTimer", {"start_seconds": 300.0})),
    ("clear all my timers", ("timers", "HassCancelAllTimers", {})),
    ("what do you get if you multiply 13 by 4", ("maths", "HarkenMaths", {"expression": "multiply 13 by 4"})),
    ("quick what is 12 times 12", ("maths", "HarkenMaths", {"expression": "what is 12 times 12"})),
    ("how heavy is 2 stone in kilos", ("units", "HarkenConvert", {"amount": 2.0, "source": "stone", "target": "kilogram"})),
    ("a marathon is 26.2 miles how many kilometers is that", ("units", "HarkenConvert", {"amount": 26.2, "source": "mile", "target": "kilometer"})),
    ("what's 350 f in c", ("units", "HarkenConvert", {"amount": 350.0, "source": "degF", "target": "degC"})),
    ("nevermind forget it", ("control", "HassNevermind", {})),
    ("okay that's enough stop", ("control", "HarkenStop", {})),
    ("what sort of things can you help me with", ("control", "HarkenHelp", {})),
    ("could you say that again", ("control", "HarkenRepeat", {})),
    ("what's the date gonna be the day after tomorrow", ("clock", "HarkenGetDayDate", {"day": "the day after tomorrow"})),
    ("which day of the week was it three days ago", ("clock", "HarkenGetDayDate", {"day": "three days ago"})),
    ("what day of the month is it", ("clock", "HassGetCurrentDate", {})),
])
def test_a_skill_reads_what_no_template_matched(heard, reading):
    assert loose.read(heard, TODAY) == reading


@pytest.mark.parametrize("heard", [
    "what is the capital of france", "how long should i boil an egg", "what time does the sun set", "what does a timer do",
    "how many legs does a spider have", "who sang stop in the name of love", "what is the boiling point of water in fahrenheit",
    "how many days are there in a leap year", "what is the speed of light", "what is the volume of a sphere",
    "which day of the week comes after monday", "what is the date of christmas", "how much is 5 pounds in dollars",
    "why do timers beep", "what's a good kitchen timer to buy", "how many minutes in a football match",
    "convert this recipe to grams", "tell me about the second world war", "what can you tell me about paris",
    "stop in the name of love", "what is one plus one in binary", "how do i set a timer on my phone",
    "what year did the first world war end", "is 7 a prime number", "what is the square root of all evil",
])
def test_a_question_for_the_language_model_is_left_to_it(heard):
    assert loose.read(heard, TODAY) is None


@pytest.mark.parametrize("words, seconds", [
    ("twenty minutes", 1200), ("an hour and a half", 5400), ("half an hour", 1800), ("a quarter of an hour", 900),
    ("1 hour 15 minutes", 4500), ("two and a half minutes", 150), ("90 seconds", 90), ("30 more seconds", 30),
])
def test_a_length_is_read_in_words_and_digits(words, seconds):
    found = loose.duration(words.split())
    assert found is not None and found[0] == seconds


@pytest.mark.parametrize("heard, reading", [
    ("how much longer on the rice", ("timers", "HassTimerStatus", {"name": "rice"})),
    ("pause the laundry", ("timers", "HassPauseTimer", {"name": "laundry"})),
    ("put five more minutes on the pizza", ("timers", "HassIncreaseTimer", {"name": "pizza", "seconds": 300.0})),
])
def test_a_timer_set_now_is_known_by_its_name_alone(heard, reading):
    assert loose.read(heard, TODAY, timers=["rice", "laundry", "pizza"]) == reading
    assert loose.read(heard, TODAY) is None  # with no such timer it is not a timer question


@pytest.mark.parametrize("heard", ["how long does it take to boil an egg", "what goes well with rice", "i had rice for dinner"])
def test_a_timers_name_in_another_question_is_not_taken_for_it(heard):
    assert loose.read(heard, TODAY, timers=["egg", "rice"]) is None


@pytest.mark.parametrize("heard, intent", [
    ("it's too loud turn it down", "HarkenVolumeDown"), ("can you be a bit louder", "HarkenVolumeUp"),
    ("i can't hear you", "HarkenVolumeUp"),
])
def test_a_volume_direction_framed_by_nothing_else(heard, intent):
    assert loose.read(heard, TODAY) == ("volume", intent, {})


@pytest.mark.parametrize("heard", ["why is my tv too loud", "how do i turn it up on my phone", "louder than a bomb is a film"])
def test_a_volume_word_in_another_question_is_not_taken_for_it(heard):
    assert loose.read(heard, TODAY) is None


@pytest.mark.parametrize("heard, reading", [
    ("what's thirty centimeters and inches", ("units", "HarkenConvert", {"amount": 30.0, "source": "centimeter", "target": "inch"})),
    ("what's three hundred fifty f and c", ("units", "HarkenConvert", {"amount": 350.0, "source": "degF", "target": "degC"})),
])
def test_a_conversion_survives_in_heard_as_and(heard, reading):
    assert loose.read(heard, TODAY) == reading
