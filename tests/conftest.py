"""Shared fixtures for every tier: real clips made with real voices, and a runner for the real CLI.

The helpers they use, and that tests import by name, are in support/harness.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from harken.audio.wav import write_wav
from support.harness import CLI_TIMEOUT, RATE, Run, Voices, harken_cmd, read_events


@pytest.fixture(scope="session")
def voices() -> Voices:
    return Voices()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir: Path):
    def make(name: str, *parts: np.ndarray, noise: float = 30.0) -> Path:
        audio = np.concatenate(parts).astype(np.float64)
        audio += np.random.default_rng(len(name)).normal(0, noise, len(audio))  # a live room, not digital silence
        path = clip_dir / f"{name}.wav"
        write_wav(path, np.clip(audio, -32768, 32767).astype(np.int16), RATE)
        return path

    return make


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def run_harken(tmp_path: Path, data_dir: Path):
    """Run `harken run --input ... --fast` (or other args) and collect events and output."""

    def run(wav: Path, *extra: str, fast: bool = True, timeout: float = CLI_TIMEOUT) -> Run:
        events, output = tmp_path / "events.jsonl", tmp_path / "out.wav"
        args = ["run", "--data-dir", str(data_dir), "--input", str(wav), "--output", str(output), "--events", str(events), "-q",
                "--control", str(tmp_path / "control.sock")]
        if fast:
            args.append("--fast")
        proc = subprocess.run(harken_cmd(*args, *extra), capture_output=True, text=True, timeout=timeout)
        return Run(proc.returncode, proc.stdout, proc.stderr, read_events(events), output if output.exists() else None)

    return run
