"""A running device with a microphone in real time, a button and a light: `harken run` on real ALSA
(alsa-lib's file plugin fed by :class:`~support.mic.PipeMic`), real workers, and gpiozero's mock pins
driven through the control socket (HARKEN_FAULT_INJECTION), as a finger would."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from harken.hw.panel import DEBOUNCE
from harken.supervisor.control import query
from support.harness import harken_cmd, read_events
from support.mic import PipeMic

BOOT = 240.0
PANEL = 'button = "GPIO17"\nled = "GPIO12"\nled_kind = "pwm"\n'
"""A button on GPIO17 and a dimmable light on GPIO12 (the Raspberry Pi profiles' pins)."""
WAIT = 60.0


class Device:
    def __init__(self, tmp_path, data_dir, board: str, extra_config: str = "", env: dict | None = None) -> None:
        self.mic = PipeMic(tmp_path)
        self.events = tmp_path / "events.jsonl"
        self.control = tmp_path / "control.sock"
        config = tmp_path / "harken.toml"
        config.write_text(self.mic.config + "[board]\n" + board + extra_config)
        env = dict(os.environ, **self.mic.env(), GPIOZERO_PIN_FACTORY="mock", GPIOZERO_MOCK_PIN_CLASS="mockpwmpin",
                   HARKEN_FAULT_INJECTION="1", **(env or {}))
        self.stderr = tmp_path / "stderr.txt"
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                harken_cmd("run", "--config", str(config), "--data-dir", str(data_dir), "--events", str(self.events), "-q",
                           "--control", str(self.control)),
                stdout=subprocess.DEVNULL, stderr=err, env=env)
        self.mic.start()
        self.released_at = -1.0

    def wait(self, predicate, timeout=WAIT, what=""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(read_events(self.events))
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"harken exited ({self.proc.returncode}): {self.stderr.read_text()[-3000:]}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; events: {[e['type'] for e in read_events(self.events)][-40:]}")

    def of(self, kind, **match):
        return [e for e in read_events(self.events) if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    def pin(self, name, drive=None):
        fields = {"pin": name} if drive is None else {"pin": name, "drive": drive}
        return query(self.control, "fault", **fields)

    def press(self, seconds: float) -> None:
        # A finger needs a moment between two presses: one that starts within DEBOUNCE of the
        # last release is contact bounce, and the panel rightly ignores it.
        time.sleep(max(0.0, self.released_at + 4 * DEBOUNCE - time.monotonic()))
        self.pin("GPIO17", "low")
        time.sleep(seconds)
        self.pin("GPIO17", "high")
        self.released_at = time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.mic.close()


@pytest.fixture
def device(tmp_path, data_dir):
    made = []

    def make(board: str = PANEL, extra_config: str = "", env: dict | None = None) -> Device:
        made.append(Device(tmp_path, data_dir, board, extra_config, env))
        made[-1].wait(lambda ev: [e for e in ev if e["type"] == "ready"], BOOT, "ready")
        return made[-1]

    yield make
    for d in made:
        d.stop()
