"""The router on the real templates (Home Assistant's and ours): which skill gets a question as a recogniser writes
it, and which questions must still reach the language model. No processes: this is the matching alone."""

from __future__ import annotations

import pytest

from harken.config import SkillSettings
from harken.pipeline.router import Router, normalize
from harken.skills import builtin, inventory


@pytest.fixture(scope="module")
def router() -> Router:
    r = Router(inventory.load(SkillSettings(sentences="/nonexistent"), with_plugins=False), builtin.accepts())
    r.warm()
    return r


@pytest.mark.parametrize("heard, clean", [
    ("What time is it?", "what time is it"),
    ("Um, set a timer for five minutes, please.", "set a timer for five minutes"),
    ("Uh... okay, set a timer for 5 mins", "set a timer for 5 minutes"),
    ("Hey, what’s 2 + 2?", "what's 2 + 2"),
    ("Set the volume to 40%.", "set the volume to 40%"),
    ("What is 3.5 times 2?", "what is 3.5 times 2"),
    ("Set a timer for a minute.", "set a timer for 1 minute"),
    ("Set the volume to thirty per cent.", "set the volume to thirty percent"),
    ("Turned the volume down.", "turn the volume down"),
    ("What's the date to-morrow?", "what's the date tomorrow"),
    ("Cancel the pasta-timer.", "cancel the pasta timer"),
])
def test_a_question_is_normalised_as_the_templates_expect(heard, clean):
    assert normalize(heard) == clean


SKILL_QUESTIONS = [
    # clock
    ("What time is it?", "clock", "HassGetCurrentTime"), ("what's the time", "clock", "HassGetCurrentTime"),
    ("Do you know what time it is?", "clock", "HassGetCurrentTime"), ("Tell me the time, please.", "clock", "HassGetCurrentTime"),
    ("What's the date today?", "clock", "HassGetCurrentDate"), ("What is today's date?", "clock", "HassGetCurrentDate"),
    ("What day is it?", "clock", "HarkenGetWeekday"), ("Which day of the week is it today?", "clock", "HarkenGetWeekday"),
    ("What's the date next Friday?", "clock", "HarkenGetDayDate"), ("What date is tomorrow?", "clock", "HarkenGetDayDate"),
    ("What day was yesterday?", "clock", "HarkenGetDayDate"),
    # timers
    ("Set a timer for five minutes.", "timers", "HassStartTimer"), ("um, set a timer for 5 mins", "timers", "HassStartTimer"),
    ("Set a pasta timer for 8 minutes.", "timers", "HassStartTimer"), ("Set a 10 minute egg timer.", "timers", "HassStartTimer"),
    ("Timer for twenty five minutes.", "timers", "HassStartTimer"), ("Set a timer for two and a half minutes.", "timers", "HassStartTimer"),
    ("Set a timer for half an hour.", "timers", "HassStartTimer"), ("Start a timer for an hour and 15 minutes", "timers", "HassStartTimer"),
    ("Wake me up in 20 minutes.", "timers", "HassStartTimer"), ("Set a timer for 90 seconds", "timers", "HassStartTimer"),
    ("How much time is left?", "timers", "HassTimerStatus"), ("How long is left on the pasta timer?", "timers", "HassTimerStatus"),
    ("What timers do I have?", "timers", "HassTimerStatus"), ("Cancel the timer.", "timers", "HassCancelTimer"),
    ("Cancel the pasta timer.", "timers", "HassCancelTimer"), ("Cancel all timers.", "timers", "HassCancelAllTimers"),
    ("Pause the timer.", "timers", "HassPauseTimer"), ("Resume the timer.", "timers", "HassUnpauseTimer"),
    ("Add two minutes to the timer.", "timers", "HassIncreaseTimer"), ("Take 1 minute off the timer", "timers", "HassDecreaseTimer"),
    # maths
    ("What is seventeen times three?", "maths", "HarkenMaths"), ("What a seventeen times three.", "maths", "HarkenMaths"),
    ("what's 15% of 80", "maths", "HarkenMaths"), ("What is the square root of 144?", "maths", "HarkenMaths"),
    ("Two to the power of ten", "maths", "HarkenMaths"), ("What's 100 divided by 7?", "maths", "HarkenMaths"),
    ("calculate 12 plus 30 minus 4", "maths", "HarkenMaths"), ("What is 2 + 2?", "maths", "HarkenMaths"),
    # units
    ("How many grams are in a pound?", "units", "HarkenConvert"), ("Convert 5 miles to kilometres.", "units", "HarkenConvert"),
    ("What's 100 Fahrenheit in Celsius?", "units", "HarkenConvert"), ("How many cups in a litre?", "units", "HarkenConvert"),
    ("How many feet are in the mile?", "units", "HarkenConvert"), ("How many megabytes in 3 gigabytes?", "units", "HarkenConvert"),
    # volume
    ("Turn the volume up.", "volume", "HarkenVolumeUp"), ("Louder, please.", "volume", "HarkenVolumeUp"),
    ("Volume down.", "volume", "HarkenVolumeDown"), ("Make it quieter.", "volume", "HarkenVolumeDown"),
    ("Set the volume to 40%.", "volume", "HarkenSetVolume"), ("set the volume to forty percent", "volume", "HarkenSetVolume"),
    ("Volume 7", "volume", "HarkenSetVolume"), ("Max volume", "volume", "HarkenVolumeMax"), ("Mute.", "volume", "HarkenMute"),
    ("Unmute", "volume", "HarkenUnmute"),
    # control
    ("Stop!", "control", "HarkenStop"), ("Okay, stop.", "control", "HarkenStop"), ("Never mind.", "control", "HassNevermind"),
    ("Repeat that.", "control", "HarkenRepeat"), ("What did you say?", "control", "HarkenRepeat"),
    ("What can you do?", "control", "HarkenHelp"),
    # limits: true answers instead of a language model's claim
    ("Turn on the kitchen light.", "limits", "HarkenControlDevice"), ("Lock the front door", "limits", "HarkenControlDevice"),
    ("Play some jazz.", "limits", "HarkenPlayMedia"), ("What's the weather like tomorrow?", "limits", "HarkenOnline"),
    ("Remind me to buy milk.", "limits", "HarkenOnline"),
]


@pytest.mark.parametrize("question, skill, intent", SKILL_QUESTIONS)
def test_a_question_a_skill_knows_goes_to_it(router, question, skill, intent):
    route = router.route(question)
    assert (route and (route.skill, route.intent)) == ((skill, intent) if skill else None), route


@pytest.mark.parametrize("question", [
    "What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
    "What time does the sun set?", "What is the time complexity of quicksort?", "Tell me a joke.", "What is pi?",
    "Is seven a prime number?", "What is the speed of light?", "How do I make pasta?", "What's a good name for a cat?",
    "Why is the sky blue?", "What is 2020 known for?", "What does a timer do?", "Who played Batman?",
])
def test_a_question_no_skill_knows_reaches_the_language_model(router, question):
    assert router.route(question) is None


def test_a_sum_keeps_only_what_it_reads_of_the_wildcard(router):
    route = router.route("What a seventeen times three.")
    assert route is not None and route.slots == {"expression": "seventeen times three"}


def test_a_bare_volume_number_is_a_level_out_of_ten_and_a_percentage_says_so(router):
    assert router.route("Volume 7").slots == {"volume": 70}  # type: ignore[union-attr]
    assert router.route("Volume 7 percent").slots == {"volume": 7}  # type: ignore[union-attr]
    assert router.route("Set the volume to 45").slots == {"volume": 45}  # type: ignore[union-attr]


def test_timer_slots_carry_numbers_and_names(router):
    route = router.route("Set a pasta timer for one and a half hours")
    assert route is not None and route.slots == {"name": "pasta", "hours": 1, "minutes": 30}


def test_skills_turned_off_are_not_matched(tmp_path):
    r = Router(inventory.load(SkillSettings(sentences=str(tmp_path), disabled=("maths", "clock")), with_plugins=False),
               builtin.accepts())
    assert r.route("What is two plus two?") is None and r.route("What time is it?") is None
    assert r.route("Set a timer for 5 minutes").skill == "timers"  # type: ignore[union-attr]


def test_a_users_sentence_files_add_sentences_and_fixed_answers_later_files_winning(tmp_path):
    (tmp_path / "10-wifi.yaml").write_text(
        'intents:\n  WifiPassword:\n    data:\n      - sentences: ["what is the wifi password"]\n'
        'responses:\n  intents:\n    WifiPassword:\n      default: "It is on the fridge."\n')
    (tmp_path / "20-time.yaml").write_text('intents:\n  HassGetCurrentTime:\n    data:\n      - sentences: ["what o\'clock is it"]\n')
    (tmp_path / "30-broken.yaml").write_text("intents: [this is: not a mapping\n")
    (tmp_path / "40-orphan.yaml").write_text('intents:\n  Nobody:\n    data:\n      - sentences: ["who owns this"]\n')
    (tmp_path / "50-wifi.yaml").write_text('responses:\n  intents:\n    WifiPassword:\n      default: "Ask at the desk."\n'
                                           'intents:\n  WifiPassword:\n    data:\n      - sentences: ["wifi code"]\n')
    found = inventory.load(SkillSettings(sentences=str(tmp_path)), with_plugins=False)
    r = Router(found, builtin.accepts())
    wifi = r.route("What is the WiFi password?")
    assert wifi is not None and wifi.place == "response" and found.responses["WifiPassword"] == "Ask at the desk."
    assert r.route("wifi code") is not None  # both files' sentences reach it
    assert r.route("What o'clock is it?").skill == "clock"  # type: ignore[union-attr]
    assert r.route("who owns this") is None
    assert len(found.problems) == 2 and "30-broken.yaml" in found.problems[0] and "40-orphan.yaml" in found.problems[1]
    assert "belong to no skill" in found.problems[1]
