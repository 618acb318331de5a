"""Skill plugins and the user's sentence files on the real CLI and a real running device.

The plugins are real packages (examples/harken-coin, and tests/data/plugins/harken-test-skills
whose skills raise, spin forever and eat memory), built and installed with pip into a
folder of their own that harken finds on PYTHONPATH: nothing is installed into the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harken.audio import RATE
from harken.audio.wav import write_wav
from harken.pipeline.respond import skill_apology
from harken.supervisor.control import query
from support.harness import alive, finish, harken_cmd, read_events, start, stderr_of, wait_for, words
from support.paths import DATA, REPO

COIN = REPO / "examples" / "harken-coin"
TEST_SKILLS = DATA / "plugins" / "harken-test-skills"
PIP_TIMEOUT = 180
ASK_TIMEOUT = 120
DEADLINE = 2.0
"""``[workers] skills_deadline`` on the device: a skill that takes longer is cut off and its worker restarted."""
GRACE = 10.0
"""What the apology for a hung skill may take beyond the deadline (a loaded machine, the reply's way back)."""
COIN_FACES = {"Heads.", "Tails."}


def _version(package: Path) -> str:
    return tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The coin plugin and the misbehaving test skills, built offline and installed into a folder of their own."""
    target = tmp_path_factory.mktemp("plugins")
    sources = tmp_path_factory.mktemp("plugin-sources")
    copies = []
    for package in (COIN, TEST_SKILLS):  # built from copies: setuptools leaves build/ and *.egg-info beside the sources
        copies.append(sources / package.name)
        shutil.copytree(package, copies[-1], ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "--quiet",
                           "--target", str(target), *map(str, copies)], capture_output=True, text=True, timeout=PIP_TIMEOUT)
    assert proc.returncode == 0, f"pip could not install the test plugins:\n{proc.stdout}\n{proc.stderr}"
    return target


@pytest.fixture(scope="session")
def plugin_env(plugin_dir: Path) -> dict[str, str]:
    """The environment of a harken that has the plugins installed."""
    path = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def harken(env: dict[str, str], data_dir: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run(harken_cmd(*args, "--data-dir", str(data_dir), *extra), capture_output=True, text=True,
                          timeout=ASK_TIMEOUT, env=env)


def toml(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ask(env: dict[str, str], data_dir: Path, tmp_path: Path, text: str, config: Path | None = None) -> subprocess.CompletedProcess:
    proc = harken(env, data_dir, "ask", text, "--output", str(tmp_path / "answer.wav"), config=config)
    assert proc.returncode == 0, proc.stderr
    return proc


# -- harken skills list ----------------------------------------------------------------------------
def test_skills_list_shows_the_plugin_its_sentences_and_source_the_built_ins_and_the_broken_plugin(plugin_env, data_dir, tmp_path):
    source = f"plugin harken-coin {_version(COIN)}"
    text = harken(plugin_env, data_dir, "skills", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"coin: flip a coin and roll dice [{source}; runs in the skills worker]" in lines, text.stdout
    assert "  intents: CoinFlip, DieRoll" in lines
    assert {"    (flip|toss) a coin", "    heads or tails", "    (roll|throw) a (die|dice)"} <= set(lines), text.stdout
    for builtin in ("clock", "timers", "maths", "units", "volume", "control"):
        assert any(line.startswith(f"{builtin}: ") and "[built-in;" in line for line in lines), (builtin, text.stdout)
    problems = [line for line in lines if line.startswith("problem: ")]
    assert len(problems) == 1 and "broken" in problems[0] and "harken-test-skills" in problems[0], problems
    assert "ModuleNotFoundError" in problems[0], problems  # says why, not just that
    # The misbehaving plugins are listed like any other: nothing shows they misbehave until asked.
    assert any(line.startswith("crash: ") for line in lines)

    listed = json.loads(harken(plugin_env, data_dir, "skills", "list", "--json").stdout)
    coin = next(s for s in listed["skills"] if s["name"] == "coin")
    assert coin["source"] == source and coin["enabled"] and coin["place"] == "worker"
    assert coin["intents"] == ["CoinFlip", "DieRoll"] and "heads or tails" in coin["sentences"]
    assert {s["name"] for s in listed["skills"] if s["source"] == "built-in"} >= {"clock", "timers", "maths", "units"}
    assert [p for p in listed["problems"] if "broken" in p] == listed["problems"] and len(listed["problems"]) == 1

    off = toml(tmp_path, "coin-off.toml", '[skills]\ndisabled = ["coin"]\n')
    text = harken(plugin_env, data_dir, "skills", "list", "--brief", config=off)
    assert text.returncode == 0, text.stderr
    assert any(line.startswith("coin (OFF: [skills] disabled): flip a coin") for line in text.stdout.splitlines()), text.stdout
    listed = json.loads(harken(plugin_env, data_dir, "skills", "list", "--json", config=off).stdout)
    assert next(s for s in listed["skills"] if s["name"] == "coin")["enabled"] is False


# -- harken ask, without a device --------------------------------------------------------------------
def test_ask_is_answered_by_the_plugin_and_by_the_language_model_once_it_is_disabled(plugin_env, data_dir, tmp_path):
    proc = ask(plugin_env, data_dir, tmp_path, "Flip a coin.")
    assert proc.stdout.strip() in COIN_FACES, proc.stdout
    assert "the coin skill answers (CoinFlip" in proc.stderr, proc.stderr
    assert (tmp_path / "answer.wav").stat().st_size > 10_000  # and it was spoken

    proc = ask(plugin_env, data_dir, tmp_path, "Roll a twenty-sided die.")
    assert "the coin skill answers (DieRoll" in proc.stderr, proc.stderr
    rolled = [int(w) for w in words(proc.stdout) if w.isdigit()]
    assert proc.stdout.startswith("You rolled a") and len(rolled) == 1 and 1 <= rolled[0] <= 20, proc.stdout

    proc = ask(plugin_env, data_dir, tmp_path, "Flip a coin.", config=toml(tmp_path, "coin-off.toml", '[skills]\ndisabled = ["coin"]\n'))
    assert "the language model answers" in proc.stderr and "coin skill" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), proc.stdout  # the model's words, whatever they are


# -- one running device: a good plugin and three bad ones ------------------------------------------------
@pytest.fixture(scope="module")
def quiet_room(tmp_path_factory) -> Path:
    """Three minutes of a quiet room, played in real time: the device runs, hears nothing, serves its control socket."""
    path = tmp_path_factory.mktemp("skill-clips") / "quiet.wav"
    write_wav(path, np.random.default_rng(7).normal(0, 30, 180 * RATE).astype(np.int16), RATE)
    return path


def _skills_worker(sock: Path) -> dict:
    (worker,) = [w for w in query(sock, "status", timeout=30)["workers"] if w["role"] == "skills"]
    return worker


def _errors(events: Path, code: str) -> list[dict]:
    return [e for e in read_events(events) if e["type"] == "error" and e.get("code") == code]


def test_a_device_answers_with_the_plugin_and_survives_plugins_that_crash_hang_and_eat_memory(plugin_env, data_dir, tmp_path, quiet_room):
    config = tmp_path / "skills.toml"
    config.write_text(f"[workers]\nskills_deadline = {DEADLINE}\n")
    sock = tmp_path / "control.sock"
    proc, events, _ = start(tmp_path, data_dir, quiet_room, "--config", str(config), env=plugin_env)

    def asks(text: str, timeout: float = 30.0) -> dict:
        assert proc.poll() is None, f"harken died: {stderr_of(proc)[-3000:]}"
        return query(sock, "ask", timeout=timeout, text=text, speak=False)

    def answers_maths() -> None:
        reply = asks("What is 2 plus 2?")
        assert reply["skill"] == "maths" and "4" in words(reply["answer"]), reply

    try:
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
        # The broken entry point is reported once, and the other plugins are on.
        (incomplete,) = wait_for(events, lambda ev: [e for e in ev if e["type"] == "error" and e.get("code") == "skills-incomplete"], proc)
        assert incomplete["stage"] == "skills" and "broken" in incomplete["message"], incomplete
        status = query(sock, "status", timeout=30)
        assert {"coin", "crash", "sleepy", "greedy", "clock", "maths"} <= set(status["skills"]["enabled"]), status["skills"]
        assert len(status["skills"]["problems"]) == 1 and "broken" in status["skills"]["problems"][0]

        reply = asks("Flip a coin.")
        assert reply["skill"] == "coin" and reply["answer"] in COIN_FACES, reply

        # A skill that raises: the person hears an apology naming it, the event log says which, the device goes on.
        reply = asks("Crash now.")
        assert reply == {**reply, "skill": "crash", "answer": skill_apology("crash")}, reply
        (failed,) = _errors(events, "skill-failed")
        assert failed["stage"] == "skills" and failed["message"].startswith("crash"), failed
        answers_maths()

        # A skill that never returns: an apology once the deadline has passed, and a fresh worker.
        before = _skills_worker(sock)
        reply = asks("Take a long nap.", timeout=DEADLINE + GRACE)  # the bound is the point: the watchdog cut it off
        assert reply == {**reply, "skill": "sleepy", "answer": skill_apology("sleepy")}, reply
        assert [e["message"] for e in _errors(events, "skill-failed")][-1].startswith("sleepy")
        # The stuck worker is killed at once; a question asked meanwhile waits for its replacement (it is not blamed
        # on its own skill), and the replacement answers it.
        answers_maths()
        after = wait_for(events, lambda ev: [e for e in ev if e["type"] == "worker" and e["role"] == "skills"
                                             and e["state"] == "ready" and e["pid"] != before["pid"]], proc, timeout=60)
        assert len(_errors(events, "skill-failed")) == 2  # crash and sleepy: nothing was blamed on maths
        worker = _skills_worker(sock)
        assert worker["pid"] == after[-1]["pid"] and worker["restarts"] > before["restarts"] and worker["state"] == "ready", worker
        assert not alive(before["pid"])  # the stuck one was killed, not left spinning

        # A skill that eats memory: the worker's allocation limit stops it, and the worker answers on.
        reply = asks("Eat all the memory.", timeout=DEADLINE + GRACE)
        assert reply == {**reply, "skill": "greedy", "answer": skill_apology("greedy")}, reply
        assert [e["message"] for e in _errors(events, "skill-failed")][-1].startswith("greedy")
        reply = asks("Toss a coin.")
        assert reply["skill"] == "coin" and reply["answer"] in COIN_FACES, reply
        answers_maths()
        assert proc.poll() is None  # the supervisor never went down
    finally:
        proc.send_signal(signal.SIGTERM)
        code = finish(proc)
    assert code == 0, stderr_of(proc)[-3000:]
    assert len(_errors(events, "skill-failed")) == 3  # one per bad question, nothing else failed


# -- the user's sentence files ---------------------------------------------------------------------------
WIFI = """
intents:
  WifiPassword:
    data:
      - sentences:
          - "what is the wifi password"
          - "what's the wifi password"
responses:
  intents:
    WifiPassword:
      default: "It's on the card by the door."
"""
O_CLOCK = """
intents:
  HassGetCurrentTime:
    data:
      - sentences:
          - "what o'clock is it"
"""
BROKEN = "intents:\n  Oops:\n    data: [this is not\n"
WIFI_AGAIN = """
intents:
  WifiPassword:
    data:
      - sentences:
          - "tell me the wifi password"
responses:
  intents:
    WifiPassword:
      default: "The new password is on the fridge."
"""


def test_user_sentence_files_add_fixed_answers_and_sentences_and_a_broken_file_is_skipped(data_dir, tmp_path):
    folder = tmp_path / "sentences"
    folder.mkdir()
    for name, text in (("10-wifi.yaml", WIFI), ("20-time.yaml", O_CLOCK), ("30-broken.yaml", BROKEN), ("40-wifi.yaml", WIFI_AGAIN)):
        (folder / name).write_text(text)
    config = toml(tmp_path, "sentences.toml", f'[skills]\nsentences = "{folder}"\n')
    env = dict(os.environ)  # no plugins: the sentence files alone

    # The later file's answer wins, for the earlier file's sentences and its own.
    for question in ("What is the wifi password?", "Tell me the wifi password."):
        proc = ask(env, data_dir, tmp_path, question, config=config)
        assert proc.stdout.strip() == "The new password is on the fridge.", (question, proc.stdout, proc.stderr)
        assert "the sentences skill answers (WifiPassword" in proc.stderr, proc.stderr
    # A sentence added to a built-in intent reaches the built-in skill.
    proc = ask(env, data_dir, tmp_path, "What o'clock is it?", config=config)
    assert "the clock skill answers (HassGetCurrentTime" in proc.stderr, proc.stderr
    assert proc.stdout.startswith("It's ") and any(ch.isdigit() for ch in proc.stdout), proc.stdout
    # The broken file is named, with why, and skipped; the rest still work.
    assert "30-broken.yaml" in proc.stderr, proc.stderr

    listed = json.loads(harken(env, data_dir, "skills", "list", "--json", config=config).stdout)
    assert listed["responses"] == {"WifiPassword": "The new password is on the fridge."}
    (problem,) = listed["problems"]
    assert str(folder / "30-broken.yaml") in problem and "skipped" in problem, problem
    clock = next(s for s in listed["skills"] if s["name"] == "clock")
    assert "what o'clock is it" in clock["sentences"], clock["sentences"]
    mine = next(s for s in listed["skills"] if s["name"] == "sentences")
    assert mine["intents"] == ["WifiPassword"] and mine["source"] == f"sentences {folder}"
    text = harken(env, data_dir, "skills", "list", config=config).stdout
    assert f"problem: {folder / '30-broken.yaml'}: skipped" in text, text
    assert "    tell me the wifi password" in text.splitlines() and "    what is the wifi password" in text.splitlines(), text
