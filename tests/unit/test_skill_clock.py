from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from harken.skills.clock import ClockError, answer, ordinal, resolve_day, say_time, zone

WEDNESDAY = date(2026, 12, 9)
FRIDAY = date(2026, 12, 11)
MONDAY_9AM = datetime(2026, 12, 7, 9, 0, tzinfo=zone("Europe/Berlin"))


def at(utc: datetime, name: str) -> datetime:
    """The instant ``utc`` on a clock in the zone ``name``."""
    return utc.replace(tzinfo=timezone.utc).astimezone(zone(name))


@pytest.mark.parametrize("hour, minute, said", [
    (18, 5, "It's 6:05 pm."), (12, 0, "It's noon."), (0, 0, "It's midnight."), (9, 0, "It's 9 am."),
    (12, 30, "It's 12:30 pm."), (0, 30, "It's 12:30 am."), (23, 59, "It's 11:59 pm."), (13, 0, "It's 1 pm."),
])
def test_time_is_said_naturally(hour: int, minute: int, said: str):
    assert say_time(datetime(2026, 12, 7, hour, minute, 42)) == said


def test_one_instant_on_clocks_in_three_zones():
    noon_utc = datetime(2026, 12, 7, 12, 0)
    assert answer("time", "", at(noon_utc, "America/New_York")) == "It's 7 am."
    assert answer("time", "", at(noon_utc, "Asia/Kolkata")) == "It's 5:30 pm."
    assert answer("time", "", at(noon_utc, "Europe/Berlin")) == "It's 1 pm."


def test_the_date_is_the_zone_s_date():
    evening_utc = datetime(2026, 12, 7, 19, 0)  # already past midnight in India
    assert answer("date", "", at(evening_utc, "Asia/Kolkata")) == "Today is Tuesday, December 8th."
    assert answer("date", "", at(evening_utc, "America/New_York")) == "Today is Monday, December 7th."


def test_berlin_springs_forward_and_falls_back():
    assert answer("time", "", at(datetime(2026, 3, 29, 0, 59), "Europe/Berlin")) == "It's 1:59 am."
    assert answer("time", "", at(datetime(2026, 3, 29, 1, 0), "Europe/Berlin")) == "It's 3 am."
    assert answer("time", "", at(datetime(2026, 10, 25, 0, 30), "Europe/Berlin")) == "It's 2:30 am."
    assert answer("time", "", at(datetime(2026, 10, 25, 1, 30), "Europe/Berlin")) == "It's 2:30 am."  # the hour said twice
    late_before = at(datetime(2026, 3, 28, 22, 30), "Europe/Berlin")
    assert answer("date", "tomorrow", late_before) == "Tomorrow is Sunday, March 29th."
    assert answer("date", "in 1 day", late_before + timedelta(hours=2)) == "In 1 day it will be Monday, March 30th."


def test_unknown_zones_say_what_to_set():
    for name in ("Europe/Pariss", "Europe", "../etc/passwd"):
        with pytest.raises(ValueError, match=r"\[device\] timezone .* is not a time zone; use a name from /usr/share/zoneinfo"):
            zone(name)


def test_the_system_zone_follows_localtime(tmp_path: Path):
    kolkata = Path("/usr/share/zoneinfo/Asia/Kolkata")
    if not kolkata.exists():
        pytest.skip(f"{kolkata} is not installed (Debian's tzdata package)")
    offset = datetime(2026, 12, 7, tzinfo=zone("", localtime=kolkata)).utcoffset()
    assert offset == timedelta(hours=5, minutes=30)


def test_without_localtime_the_system_zone_is_this_moment_s_offset(tmp_path: Path):
    fallback = zone("", localtime=tmp_path / "missing")
    assert fallback.utcoffset(datetime.now()) == datetime.now().astimezone().utcoffset()


@pytest.mark.parametrize("phrase, day", [
    ("", WEDNESDAY), ("today", WEDNESDAY), ("Today.", WEDNESDAY), ("tomorrow", date(2026, 12, 10)),
    ("yesterday", date(2026, 12, 8)), ("the day after tomorrow", date(2026, 12, 11)),
    ("the day before yesterday", date(2026, 12, 7)),
    ("friday", FRIDAY), ("this friday", FRIDAY), ("next friday", FRIDAY), ("on Friday?", FRIDAY),
    ("last friday", date(2026, 12, 4)), ("wednesday", WEDNESDAY), ("next wednesday", date(2026, 12, 16)),
    ("last wednesday", date(2026, 12, 2)), ("monday", date(2026, 12, 14)),
    ("in 3 days", date(2026, 12, 12)), ("in three days", date(2026, 12, 12)), ("in twenty-one days", date(2026, 12, 30)),
    ("in a day", date(2026, 12, 10)), ("a week from today", date(2026, 12, 16)), ("in two weeks", date(2026, 12, 23)),
    ("in a week", date(2026, 12, 16)), ("2 days from now", date(2026, 12, 11)), ("3 days ago", date(2026, 12, 6)),
    ("in 30 days", date(2027, 1, 8)),
])
def test_day_phrases(phrase: str, day: date):
    assert resolve_day(phrase, WEDNESDAY) == day


@pytest.mark.parametrize("phrase", ["christmas", "3 days", "in days", "in 0 days", "in two and a half days", "friday the 13th",
                                    "in 3 days ago", "next week", "in 100000 days"])
def test_phrases_that_name_no_day(phrase: str):
    assert resolve_day(phrase, WEDNESDAY) is None


def test_on_a_friday_friday_is_today_and_next_friday_a_week_away():
    assert resolve_day("friday", FRIDAY) == FRIDAY
    assert resolve_day("this friday", FRIDAY) == FRIDAY
    assert resolve_day("next friday", FRIDAY) == date(2026, 12, 18)
    assert resolve_day("last friday", FRIDAY) == date(2026, 12, 4)


@pytest.mark.parametrize("kind, phrase, said", [
    ("date", "", "Today is Monday, December 7th."),
    ("date", "tomorrow", "Tomorrow is Tuesday, December 8th."),
    ("date", "yesterday", "Yesterday was Sunday, December 6th."),
    ("date", "next friday", "Next Friday is December 11th."),
    ("date", "last friday", "Last Friday was December 4th."),
    ("date", "in 4 weeks", "In 4 weeks it will be Monday, January 4th, 2027."),
    ("date", "3 days ago", "3 days ago it was Friday, December 4th."),
    ("date", "a week from today", "A week from today is Monday, December 14th."),
    ("weekday", "", "Today is Monday."),
    ("weekday", "the day after tomorrow", "The day after tomorrow is Wednesday."),
    ("weekday", "friday", "Friday is December 11th."),
    ("time", "", "It's 9 am."),
])
def test_answers(kind: str, phrase: str, said: str):
    assert answer(kind, phrase, MONDAY_9AM) == said


def test_a_day_it_cannot_read_is_a_sentence_to_speak():
    with pytest.raises(ClockError, match="^I didn't catch which day you meant.$"):
        answer("date", "christmas", MONDAY_9AM)


def test_an_unknown_question_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown clock question"):
        answer("season", "", MONDAY_9AM)


@pytest.mark.parametrize("n, said", [
    (1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"),
    (21, "21st"), (22, "22nd"), (23, "23rd"), (24, "24th"), (30, "30th"), (31, "31st"), (101, "101st"), (111, "111th"),
])
def test_ordinals(n: int, said: str):
    assert ordinal(n) == said
