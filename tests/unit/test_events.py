import json

import pytest

from harken.commands.talk import summary
from harken.events import HISTORY_LIMIT, EventLog


def test_history_keeps_only_the_most_recent_events_but_the_file_and_subscribers_get_all(tmp_path):
    seen = []
    log = EventLog(tmp_path / "events.jsonl")
    log.subscribe(seen.append)
    total = HISTORY_LIMIT + 500
    for i in range(total):
        log.emit("state", state="listening", t=float(i))
    log.close()
    assert len(log.history) == HISTORY_LIMIT
    assert [e["t"] for e in log.history] == [float(i) for i in range(total - HISTORY_LIMIT, total)]  # oldest dropped
    assert len(seen) == total
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == total


def test_a_smaller_limit_is_honoured_and_a_useless_one_refused():
    log = EventLog(history_limit=3)
    for i in range(10):
        log.emit("wake", t=float(i), score=0.9)
    assert [e["t"] for e in log.history] == [7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="at least 1"):
        EventLog(history_limit=0)


def test_the_demo_summary_reads_a_bounded_history(tmp_path):
    log = EventLog(history_limit=4)
    log.emit("state", state="idle", t=0.0)  # dropped: the summary sees the last four
    log.emit("wake", t=1.25, score=0.91, model="hey_jarvis")
    log.emit("transcript", final=True, text="what is the capital of spain", raw="", t=3.0)
    log.emit("reply", text="Madrid.", interrupted=False)
    log.emit("utterance", t=3.0, transcript="what is the capital of spain", reply="Madrid.", mode="fast",
             latency={"endpoint_delay": 0.5, "speech_end_to_first_audio": 0.9})
    text = summary(log.history, tmp_path)
    assert "wake words : 1 at 1.25 s (score 0.91)" in text
    assert "heard      : what is the capital of spain" in text and "said       : Madrid." in text
    assert [line.split()[-1] for line in text.splitlines() if "FIRST AUDIO OUT" in line] == ["0.900"]
    json.dumps(list(log.history))  # still plain dicts
