"""Knowledge packs on the real device: `harken knowledge` as an operator uses it, spoken questions answered from a
pack through `harken run --input` (real workers and models), and a SIGKILL in the middle of indexing.

Every test has a data directory of its own: a pack left in the shared one would answer somebody else's questions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.harness import harken_cmd, silence

GUIDE = """# Hotel Seeblick guest guide

## Wifi

The network is called Seeblick-Guest and the password is Moorlake84.

## Breakfast

On weekdays breakfast is served from 6:45 am to 10:00 am in the Garden Room.
At weekends breakfast is served from 8 am to 11 am.

## Pool

The indoor pool on the lower floor is open from 7 am to 9 pm. Towels are at the pool.
"""


def _harken(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(harken_cmd(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def guide(tmp_path: Path) -> Path:
    folder = tmp_path / "guide"
    folder.mkdir()
    (folder / "guide.md").write_text(GUIDE)
    return folder


def test_an_operator_adds_lists_searches_and_removes_a_pack(tmp_path, guide):
    data = str(tmp_path / "data")
    added = _harken("knowledge", "add", str(guide), "--name", "hotel", "--data-dir", data)
    assert added.returncode == 0 and "added hotel: 1 documents" in added.stdout, added.stderr
    listed = json.loads(_harken("knowledge", "list", "--json", "--data-dir", data).stdout)
    assert [p["name"] for p in listed["packs"]] == ["hotel"] and listed["packs"][0]["passages"] >= 3
    found = json.loads(_harken("knowledge", "search", "what's the wifi password", "--json", "--data-dir", data).stdout)
    assert found["action"] == "answer from hotel" and "Moorlake84" in found["says"]
    assert found["passages"][0]["headings"].endswith("Wifi") and found["passages"][0]["score"] > 0
    declined = json.loads(_harken("knowledge", "search", "is there a casino in the hotel", "--json", "--data-dir", data).stdout)
    assert declined["action"] == "decline (hotel)"
    bad = tmp_path / "menu.txt"
    bad.write_bytes(b"Caf\xe9 menu")
    refused = _harken("knowledge", "add", str(guide), str(bad), "--name", "hotel", "--data-dir", data)
    assert refused.returncode == 1 and "not UTF-8" in refused.stderr and "iconv" in refused.stderr
    assert json.loads(_harken("knowledge", "list", "--json", "--data-dir", data).stdout)["packs"] == listed["packs"]
    removed = _harken("knowledge", "remove", "hotel", "--data-dir", data)
    assert removed.returncode == 0
    assert json.loads(_harken("knowledge", "list", "--json", "--data-dir", data).stdout)["packs"] == []
    again = _harken("knowledge", "remove", "hotel", "--data-dir", data)
    assert again.returncode == 1 and "no knowledge pack named 'hotel'" in again.stderr


def test_spoken_questions_are_answered_from_the_pack_or_declined_and_the_rest_go_on(voices, make_clip, run_harken, tmp_path, guide):
    data = tmp_path / "data"
    assert _harken("knowledge", "add", str(guide), "--name", "hotel", "--data-dir", str(data)).returncode == 0
    parts = [silence(1.0)]
    for question in ("what is the wifi password?", "when is breakfast at the weekend?", "does the hotel have a casino?",
                     "what time is it?"):
        parts += [voices.piper(f"Hey Jarvis, {question}"), silence(3.5)]
    run = run_harken(make_clip("knowledge-hotel", *parts), "--data-dir", str(data))
    assert run.code == 0, run.stderr
    said = [(u["transcript"], u["reply"], u.get("knowledge"), u.get("skill")) for u in run.of("utterance")]
    assert len(said) == 4, (said, [(e["type"], e.get("text")) for e in run.events if e["type"] in ("wake", "transcript", "timeout")])
    (_, wifi, wifi_from, _), (_, breakfast, _, _), (_, casino, casino_from, _), (_, time_reply, time_from, skill) = said
    assert "Moorlake84" in wifi and wifi_from["pack"] == "hotel" and wifi_from["kind"] == "answer"
    assert wifi_from["passage"]["headings"].endswith("Wifi") and "text" not in wifi_from["passage"]  # transcripts not shared
    assert "8 am to 11 am" in breakfast
    assert casino == "Sorry, I don't have that information." and casino_from["kind"] == "decline"
    assert skill == "clock" and time_from is None and time_reply.startswith("It's")
    for u in run.of("utterance")[:3]:
        assert u["latency"]["retrieve"] < 0.25 and u["latency"]["knowledge_answer"] is not None
        assert u["latency"]["speech_end_to_first_audio"] is not None
    assert [r.get("knowledge", {}).get("kind") for r in run.of("reply")] == ["answer", "answer", "decline", None]
    assert not run.of("error"), run.of("error")


def _big_pack(folder: Path, files: int = 1500) -> Path:
    folder.mkdir()
    for i in range(files):
        (folder / f"page-{i:04d}.md").write_text(f"# Page {i}\n\n" + "\n\n".join(
            f"## Part {j}\n\n" + " ".join(f"word{(i * 31 + j * 7 + k) % 5000} sentence{k}." for k in range(60)) for j in range(8)))
    return folder


def test_a_sigkill_while_indexing_leaves_the_old_pack_whole_and_nothing_half_installed(tmp_path, guide):
    data = tmp_path / "data"
    assert _harken("knowledge", "add", str(guide), "--name", "hotel", "--data-dir", str(data)).returncode == 0
    before = (data / "knowledge" / "hotel" / "pack.json").read_text()
    big = _big_pack(tmp_path / "big")
    proc = subprocess.Popen(harken_cmd("knowledge", "add", str(big), "--name", "hotel", "--data-dir", str(data)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".tmp-hotel-") and (p / "index.sqlite").exists() for p in (data / "knowledge").iterdir()):
        assert proc.poll() is None, f"indexing ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "indexing never started"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (data / "knowledge" / "hotel" / "pack.json").read_text() == before  # the old pack, whole
    found = json.loads(_harken("knowledge", "search", "wifi password", "--json", "--data-dir", str(data)).stdout)
    assert "Moorlake84" in found["says"]
    # the next install tidies what the killed one left, and works
    assert _harken("knowledge", "add", str(guide), "--name", "spa", "--data-dir", str(data)).returncode == 0
    assert sorted(p.name for p in (data / "knowledge").iterdir()) == [".lock", "hotel", "spa"]


def test_the_demo_answers_the_capital_of_france_from_the_general_pack(tmp_path):
    """`make demo` builds the general pack (`harken knowledge add-general`) before it runs: with it, the bundled
    question is answered from GeoNames' and WordNet's data, not by the small language model's guess."""
    data = str(tmp_path / "data")
    built = _harken("knowledge", "add-general", "--if-changed", "--data-dir", data, timeout=300)
    assert built.returncode == 0 and "added general:" in built.stdout and "left out" not in built.stderr, built.stderr
    again = _harken("knowledge", "add-general", "--if-changed", "--data-dir", data)
    assert again.returncode == 0 and again.stdout.strip() == "general pack: up to date"
    demo = _harken("demo", "--fast", "--data-dir", data, "--out-dir", str(tmp_path / "demo"), timeout=300)
    assert demo.returncode == 0, demo.stderr
    said = next(line for line in demo.stdout.splitlines() if line.startswith("said"))
    assert "Paris" in said and "capital" in said, demo.stdout
    assert "answered from the knowledge pack general" in demo.stdout
    [utterance] = [json.loads(line) for line in (tmp_path / "demo" / "events.jsonl").read_text().splitlines() if '"utterance"' in line]
    assert utterance["knowledge"]["pack"] == "general" and utterance["knowledge"]["kind"] == "answer"
