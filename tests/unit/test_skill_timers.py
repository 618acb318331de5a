import json
from pathlib import Path

import pytest

from harken.skills.timers import SCHEMA, Timer, TimerBook, TimerError, done, label, missed, say_duration, say_left, started

MINUTE = 60.0
HOUR = 3600.0


class FakeClock:
    """Wall time that moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "timers.json"


@pytest.fixture
def book(path: Path, clock: FakeClock) -> TimerBook:
    book = TimerBook(path, clock)
    assert book.load() == []
    return book


def timer(seconds: float, name: str = "") -> Timer:
    return Timer(id="t1", name=name, seconds=seconds, ends_at=seconds, left=None, started_at=0.0)


@pytest.mark.parametrize("seconds, said", [
    (8 * MINUTE, "8 minutes"), (90 * MINUTE, "1 hour and 30 minutes"), (90, "1 minute and 30 seconds"), (150, "2 minutes and 30 seconds"),
    (MINUTE, "1 minute"), (45, "45 seconds"), (HOUR + 2 * MINUTE + 5, "1 hour, 2 minutes and 5 seconds"), (24 * HOUR, "24 hours"),
])
def test_durations_are_said_exactly(seconds: float, said: str):
    assert say_duration(seconds) == said


@pytest.mark.parametrize("seconds, said", [
    (0.3, "1 second"), (45, "45 seconds"), (119, "1 minute and 59 seconds"), (200, "3 minutes"), (9 * MINUTE + 41, "10 minutes"),
    (HOUR + 29 * MINUTE + 50, "1 hour and 30 minutes"), (2 * HOUR + 10, "2 hours"),
])
def test_time_left_is_rounded_as_a_person_says_it(seconds: float, said: str):
    assert say_left(seconds) == said


@pytest.mark.parametrize("seconds, name, called", [
    (8 * MINUTE, "pasta", "8 minute pasta timer"), (5 * MINUTE, "", "5 minute timer"), (HOUR, "", "1 hour timer"),
    (90 * MINUTE, "pasta", "pasta timer for 1 hour and 30 minutes"), (90, "", "timer for 1 minute and 30 seconds"),
])
def test_labels_read_well_after_your(seconds: float, name: str, called: str):
    t = timer(seconds, name)
    assert label(t) == called
    assert done(t) == f"Your {called} is done."
    assert missed(t) == f"Your {called} ended while I was off."


def test_start_sentences():
    assert started(timer(8 * MINUTE, "pasta")) == "Pasta timer set for 8 minutes."
    assert started(timer(5 * MINUTE)) == "Timer set for 5 minutes."


def test_several_timers_run_at_once_soonest_first(book: TimerBook, clock: FakeClock):
    pasta = book.start(8 * MINUTE, "the Pasta timer")
    plain = book.start(5 * MINUTE)
    egg = book.start(3 * MINUTE, "egg")
    assert pasta.name == "pasta" and len({pasta.id, plain.id, egg.id}) == 3
    assert book.running() == [egg, plain, pasta]
    assert book.next_end() == egg.ends_at
    clock.advance(MINUTE)
    assert book.status() == ("You have 3 timers: an egg timer with 2 minutes left, a 5 minute timer with 4 minutes left "
                             "and a pasta timer with 7 minutes left.")
    assert book.find(name="pasta") == [pasta]
    assert book.find(seconds=5 * MINUTE) == [plain]
    assert book.find(name="") == [plain]


def test_one_timer_status(book: TimerBook, clock: FakeClock):
    assert book.status() == "You have no timers running."
    book.start(5 * MINUTE, "pasta")
    clock.advance(100)
    assert book.status() == "Your pasta timer has 3 minutes left."
    clock.advance(120)
    assert book.status() == "Your pasta timer has 1 minute and 20 seconds left."


def test_a_name_is_used_by_one_timer_at_a_time(book: TimerBook, clock: FakeClock):
    book.start(8 * MINUTE, "pasta")
    clock.advance(5 * MINUTE)
    with pytest.raises(TimerError, match="^You already have a pasta timer with 3 minutes left.$"):
        book.start(10 * MINUTE, "Pasta")
    book.start(5 * MINUTE)
    book.start(5 * MINUTE)  # unnamed timers may repeat


@pytest.mark.parametrize("seconds", [0, -5, 0.5, float("nan"), 25 * HOUR])
def test_lengths_out_of_range_are_refused(book: TimerBook, seconds: float):
    with pytest.raises(TimerError):
        book.start(seconds)
    assert book.find() == []


def test_the_longest_and_shortest_timers_are_allowed(book: TimerBook):
    book.start(1)
    book.start(24 * HOUR)
    with pytest.raises(TimerError, match="^I can set timers for up to 24 hours.$"):
        book.start(24 * HOUR + 1)


def test_an_ambiguous_command_lists_the_timers(book: TimerBook, clock: FakeClock):
    book.start(10 * MINUTE)
    pasta = book.start(4 * MINUTE, "pasta")
    clock.advance(MINUTE)
    question = ("You have 2 timers: a pasta timer with 3 minutes left and a 10 minute timer with 9 minutes left. Say which one.")
    for command in (book.cancel, book.pause, lambda: book.add(MINUTE)):
        with pytest.raises(TimerError) as caught:
            command()
        assert str(caught.value) == question
    assert book.cancel(name="pasta timer") == [pasta]
    assert [t.seconds for t in book.cancel()] == [10 * MINUTE]  # now the only one


def test_timers_nobody_can_tell_apart_are_taken_soonest_first(book: TimerBook, clock: FakeClock):
    first = book.start(5 * MINUTE)
    clock.advance(MINUTE)
    second = book.start(5 * MINUTE)
    assert book.cancel(seconds=5 * MINUTE) == [first]
    assert book.find() == [second]


def test_a_timer_that_is_not_there(book: TimerBook):
    with pytest.raises(TimerError, match="^You have no timers running.$"):
        book.cancel()
    book.start(8 * MINUTE, "pasta")
    with pytest.raises(TimerError, match="^You don't have an egg timer. Your pasta timer has 8 minutes left.$"):
        book.cancel(name="egg")
    with pytest.raises(TimerError, match="^You don't have an 11 minute timer. "):
        book.cancel(seconds=11 * MINUTE)


def test_cancel_all_is_explicit(book: TimerBook):
    assert book.cancel_all() == []
    a, b = book.start(MINUTE), book.start(2 * MINUTE, "tea")
    assert book.cancel_all() == [a, b]
    assert book.status() == "You have no timers running."


def test_pause_and_resume_keep_the_time_left(book: TimerBook, clock: FakeClock):
    pasta = book.start(8 * MINUTE, "pasta")
    clock.advance(3 * MINUTE)
    assert book.pause() is pasta and pasta.paused
    clock.advance(HOUR)
    assert book.remaining(pasta) == 5 * MINUTE
    assert book.next_end() is None and book.running() == [] and book.due() == []
    assert book.status() == "Your pasta timer is paused with 5 minutes left."
    with pytest.raises(TimerError, match="^Your pasta timer is already paused.$"):
        book.pause(name="pasta")
    assert book.resume() is pasta and not pasta.paused
    with pytest.raises(TimerError, match="^Your pasta timer is not paused.$"):
        book.resume()
    clock.advance(MINUTE)
    assert book.remaining(pasta) == 4 * MINUTE


def test_pause_and_resume_choose_among_the_timers_they_can_act_on(book: TimerBook, clock: FakeClock):
    pasta, egg = book.start(8 * MINUTE, "pasta"), book.start(3 * MINUTE, "egg")
    book.pause(name="egg")
    assert book.pause() is pasta  # the only one still running
    clock.advance(MINUTE)
    assert book.status() == "You have 2 timers: an egg timer paused with 3 minutes left and a pasta timer paused with 8 minutes left."
    assert [d["paused"] for d in book.describe()] == [True, True]
    with pytest.raises(TimerError, match="Say which one.$"):
        book.resume()
    assert book.resume(name="egg") is egg


def test_adding_and_taking_away_time(book: TimerBook, clock: FakeClock):
    pasta = book.start(8 * MINUTE, "pasta")
    book.add(2 * MINUTE)
    assert book.remaining(pasta) == 10 * MINUTE
    assert pasta.seconds == 8 * MINUTE  # still "your 8 minute pasta timer"
    book.add(-HOUR, name="pasta")
    assert book.remaining(pasta) == 1
    with pytest.raises(TimerError, match="^A timer can have at most 24 hours left.$"):
        book.add(24 * HOUR)
    book.pause()
    book.add(30)
    assert pasta.left == 31


def test_ended_timers_are_handed_over_once(book: TimerBook, clock: FakeClock):
    egg, pasta = book.start(3 * MINUTE, "egg"), book.start(8 * MINUTE, "pasta")
    clock.advance(3 * MINUTE - 1)
    assert book.due() == []
    clock.advance(1)
    assert book.due() == [egg]
    assert book.due() == []
    assert book.find() == [pasta]
    assert done(egg) == "Your 3 minute egg timer is done."


def test_describe_for_the_status_and_mqtt(book: TimerBook, clock: FakeClock):
    t = book.start(90 * MINUTE, "roast")
    clock.advance(10)
    assert book.describe() == [{"id": t.id, "name": "roast", "label": "roast timer for 1 hour and 30 minutes",
                                "seconds": 90 * MINUTE, "left": 90 * MINUTE - 10, "paused": False}]


def test_timers_survive_a_restart(path: Path, book: TimerBook, clock: FakeClock):
    pasta = book.start(8 * MINUTE, "pasta")
    egg = book.start(3 * MINUTE, "egg")
    stew = book.start(20 * MINUTE, "stew")
    book.pause(name="stew")
    clock.advance(4 * MINUTE)  # the device is off meanwhile

    again = TimerBook(path, clock)
    gone = again.load()
    assert [t.id for t in gone] == [egg.id]
    assert missed(gone[0]) == "Your 3 minute egg timer ended while I was off."
    assert again.problems == []
    by_name = {t.name: t for t in again.find()}
    assert set(by_name) == {"pasta", "stew"}
    assert again.remaining(by_name["pasta"]) == 4 * MINUTE
    assert by_name["stew"].paused and again.remaining(by_name["stew"]) == 20 * MINUTE
    assert again.start(MINUTE).id not in {pasta.id, egg.id, stew.id}

    assert TimerBook(path, clock).load() == []  # the missed timer was taken out of the file too


def test_the_file_is_versioned_and_written_atomically(path: Path, book: TimerBook):
    book.start(MINUTE, "tea")
    book.start(2 * MINUTE)
    book.cancel(name="tea")
    assert [p.name for p in path.parent.iterdir()] == ["timers.json"]  # no temporary file left over
    data = json.loads(path.read_text())
    assert data["version"] == SCHEMA
    assert [t["seconds"] for t in data["timers"]] == [2 * MINUTE]


@pytest.mark.parametrize("text", [
    "{not json",
    json.dumps({"version": SCHEMA + 1, "next_id": 1, "timers": []}),
    json.dumps({"version": SCHEMA, "next_id": 2, "timers": [
        {"id": "t1", "name": "", "seconds": 60, "ends_at": None, "left": None, "started_at": 0}]}),
    json.dumps({"version": SCHEMA, "next_id": 2, "timers": [{"id": "t1"}]}),
    "\xff\xfe",
])
def test_a_corrupt_file_is_set_aside_and_reported(path: Path, clock: FakeClock, text: str):
    path.write_text(text, encoding="latin-1")
    book = TimerBook(path, clock)
    assert book.load() == []
    bad = path.with_name(f"timers.json.bad-{int(clock())}")
    assert bad.read_text(encoding="latin-1") == text
    assert not path.exists()
    assert len(book.problems) == 1 and bad.name in book.problems[0]
    book.start(MINUTE)
    again = TimerBook(path, clock)
    assert again.load() == [] and len(again.find()) == 1 and again.problems == []


def test_a_book_that_cannot_be_saved_still_runs_its_timers(tmp_path: Path, clock: FakeClock):
    (tmp_path / "file").write_text("")
    book = TimerBook(tmp_path / "file" / "timers.json", clock)
    book.load()
    t = book.start(MINUTE)
    assert any("could not be saved" in p for p in book.problems)
    clock.advance(MINUTE)
    assert book.due() == [t]


def test_nothing_is_saved_before_the_book_is_read(path: Path, clock: FakeClock):
    with pytest.raises(RuntimeError, match="load"):
        TimerBook(path, clock).start(MINUTE)
    assert not path.exists()
