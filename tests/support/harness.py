"""Shared helpers: real clips made with real voices, and a runner for the real CLI (the fixtures are in tests/conftest.py)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harken.audio.resample import resample
from harken.audio.wav import read_wav
from harken.config import Settings
from support.paths import DEMO, LIBRIVOX, REPO  # noqa: F401  (re-exported: tests import them from here)

RATE = 16000
CLI_TIMEOUT = 300


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


class Voices:
    """Piper (the device's own voice) and espeak-ng, both resampled to 16 kHz."""

    def __init__(self) -> None:
        from harken.engines import tts

        self._piper = tts.load(Settings(), Path("/nonexistent"), deterministic=True)  # same clip every run

    def piper(self, text: str) -> np.ndarray:
        return self._piper.render(text, RATE)

    @staticmethod
    def espeak(text: str, voice: str = "en-us") -> np.ndarray:
        exe = shutil.which("espeak-ng")
        if exe is None:
            pytest.fail("espeak-ng is not installed: run `make test-deps` (apt-get install espeak-ng)")
        out = subprocess.run([exe, "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=60).stdout
        with wave.open(io.BytesIO(out)) as wf:
            pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
            return resample(pcm, wf.getframerate(), RATE)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    events: list[dict]
    output: Path | None

    def of(self, kind: str, **match) -> list[dict]:
        return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    def output_audio(self) -> tuple[np.ndarray, int]:
        assert self.output is not None
        return read_wav(self.output)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def harken_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harken", *args]


def words(text: str) -> list[str]:
    import re

    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def corrupt_model_env(tmp_path: Path, role: str, name: str, file: str) -> dict[str, str]:
    """An environment in which one model file is corrupt on disk (same size, one byte flipped).

    The model's package is shadowed on PYTHONPATH by a copy holding the altered
    file: what a failing SD card or an interrupted copy leaves behind.
    """
    import os

    from harken.models import catalog

    item = catalog.entry(role, name)
    real = item.paths()[file]
    pkg = tmp_path / "shadow" / item.module
    (pkg / Path(file).parent).mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / file).write_bytes(bytes(data))
    return dict(os.environ, PYTHONPATH=str(tmp_path / "shadow"))


def worker_processes(marker: str) -> list[int]:
    """Live harken worker processes whose environment contains ``marker`` (a test's tmp path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"harken.supervisor.child" not in cmdline or marker.encode() not in (proc / "environ").read_bytes():
                continue
        except OSError:  # gone meanwhile
            continue
        if alive(int(proc.name)):
            found.append(int(proc.name))
    return found


# -- a running device ---------------------------------------------------------------------------
WAIT = 120.0


def wait_for(path, predicate, proc, timeout=WAIT):
    """Poll the events file until predicate(events) is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(path)
        found = predicate(events)
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"harken exited early ({proc.returncode}): {stderr_of(proc)}")
        time.sleep(0.02)
    pytest.fail(f"timed out; events so far: {[e['type'] for e in read_events(path)]}")


def ready_pids(events):
    """Worker pids once the device says it is ready (workers up, prompts rendered)."""
    if not [e for e in events if e["type"] == "ready"]:
        return None
    return {e["role"]: e["pid"] for e in events if e["type"] == "worker" and e["state"] == "ready" and "load_s" in e}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start(tmp_path, data_dir, clip, *extra, env=None):
    """`harken run` on a recording, in the background; stderr goes to a file (a pipe could fill up)."""
    events = tmp_path / "events.jsonl"
    out = tmp_path / "out.wav"
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            harken_cmd("run", "--data-dir", str(data_dir), "--input", str(clip), "--output", str(out), "--events", str(events),
                       "-q", "--control", str(tmp_path / "control.sock"), *extra),
            stdout=subprocess.DEVNULL, stderr=err, text=True, env=env,
        )
    proc.stderr_path = tmp_path / "stderr.txt"  # type: ignore[attr-defined]
    return proc, events, out


def stderr_of(proc) -> str:
    return proc.stderr_path.read_text()


def finish(proc):
    try:
        proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("harken did not finish")
    return proc.returncode
