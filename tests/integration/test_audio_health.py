"""Capture health on real ALSA, through alsa-lib's `file` plugin (there is no sound card here).

The microphone is a FIFO that a thread fills in real time, one 80 ms period
every 80 ms, with sound (a tone), digital silence (zeros) or nothing at all.
Given nothing, alsa-lib's read blocks on the FIFO: from AlsaSource's side, a
mic that stopped delivering frames. The ALSA configuration is the file named by
ALSA_CONFIG_PATH; alsa-lib re-reads it at the next open once the file is
replaced (a new inode; an in-place rewrite within the same second goes
unnoticed), which is how a device disappears and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harken.audio.alsa import AlsaPlayer, AlsaSource
from harken.config import AudioSettings

RATE = 16000
PERIOD = 1280  # 80 ms
TONE = (3000 * np.sin(2 * np.pi * 440 * np.arange(PERIOD) / RATE)).astype("<i2")
SILENCE = np.zeros(PERIOD, dtype="<i2")


class FifoMic:
    """A FIFO fed in real time with one period of ``sound`` per 80 ms, or with nothing while not ``playing``."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # never blocks on open, never gives the reader EOF
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)  # holds one period at most: a reopened PCM reads fresh sound
        self.sound = TONE
        self.playing = threading.Event()
        self.playing.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-mic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            if self.playing.is_set():
                with contextlib.suppress(BlockingIOError):  # nobody reading: the period is lost, as in a real mic
                    os.write(self.fd, self.sound.tobytes())
            due += PERIOD / RATE
            self._stop.wait(max(0.0, due - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.fd)


class Rig:
    """An ALSA configuration with one capture PCM, ``test_mic``, that reads the FIFO mic."""

    def __init__(self, tmp_path: Path) -> None:
        self.conf, self.fifo = tmp_path / "asound.conf", tmp_path / "mic.fifo"
        self.mic = FifoMic(self.fifo)
        self.plug(True)

    def plug(self, present: bool) -> None:
        """Define the ``test_mic`` PCM, or take it away."""
        body = 'pcm.null { type null }\n'
        if present:
            body += f'pcm.test_mic {{ type file slave.pcm "null" file "/dev/null" infile "{self.fifo}" format "raw" }}\n'
        new = self.conf.with_suffix(".new")
        new.write_text(body)
        os.replace(new, self.conf)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rig = Rig(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(rig.conf))  # read by alsa-lib at every open
    yield rig
    rig.mic.close()


def settings(**health: float) -> AudioSettings:
    return AudioSettings(capture_device="test_mic", capture_rate=RATE, period_ms=80, **health)


class Capture:
    """Pull chunks from an AlsaSource on the loop, as the pipeline does, and record its health reports."""

    def __init__(self, audio: AudioSettings) -> None:
        self.chunks: list[np.ndarray] = []
        self.reports: list[tuple[dict, int]] = []  # (report, chunks yielded before it)
        self.source = AlsaSource(audio, on_health=lambda report: self.reports.append((report, len(self.chunks))))

    @property
    def states(self) -> list[str]:
        return [report["state"] for report, _ in self.reports]

    def sound_after(self, state: str) -> bool:
        """Whether a chunk with sound was yielded after the last report of ``state``."""
        at = [n for report, n in self.reports if report["state"] == state]
        return bool(at) and any(chunk.any() for chunk in self.chunks[at[-1]:])

    async def until(self, what: str, condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s: states {self.states}, health {self.source.health()}")
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> Capture:
        self.started = time.monotonic()
        self._task = asyncio.create_task(self.pull(), name="test-pull")
        return self

    async def pull(self) -> None:
        async for chunk in self.source.chunks():
            assert chunk.dtype == np.int16 and len(chunk) == PERIOD
            self.chunks.append(chunk)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)
        left = [t.name for t in threading.enumerate() if t.name.startswith("audio-")]
        assert not left, f"capture threads still running: {left}"

    def kept_pace(self) -> None:
        """The chunks are paced by the device or the wall clock: no burst of stale audio or extra zeros."""
        elapsed = time.monotonic() - self.started
        assert len(self.chunks) * PERIOD / RATE <= elapsed + 0.5, (len(self.chunks), elapsed)


def run(scenario, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def test_digital_silence_reopens_the_device(rig: Rig) -> None:
    rig.mic.sound = SILENCE

    async def scenario() -> None:
        async with Capture(settings(deaf_after=2.0, silence_after=0.5, reopen_backoff_cap=1.0)) as cap:
            await cap.until("report of deafness", lambda: cap.states)
            report = cap.reports[0][0]
            assert report == {"state": "deaf", "reason": "digital silence for 0.5 s", "device": "test_mic", "stream": "capture"}
            await cap.until("reopen", lambda: cap.source.health()["reopens"] >= 1)
            yielded = len(cap.chunks)
            await cap.until("chunks while deaf", lambda: len(cap.chunks) >= yielded + 5)
            assert not any(chunk.any() for chunk in cap.chunks[cap.reports[0][1]:])

            rig.mic.sound = TONE  # sound again: the next reopen finds it
            await cap.until("recovery", lambda: cap.sound_after("ok"))
            assert cap.states == ["deaf", "reopening", "ok"]  # every change reported once, however many attempts
            health = cap.source.health()
            assert health["state"] == "ok" and health["reopens"] >= 1 and health["failed_opens"] == 0
            assert health["silent_seconds"] == 0 and health["frames"] > 0 and health["device"] == "test_mic"
            cap.kept_pace()

    run(scenario)


def test_no_frames_means_deaf_and_zeros_keep_time(rig: Rig) -> None:
    async def scenario() -> None:
        async with Capture(settings(deaf_after=0.5, silence_after=5.0, reopen_backoff_cap=1.0)) as cap:
            await cap.until("sound", lambda: any(chunk.any() for chunk in cap.chunks))
            rig.mic.playing.clear()  # the mic stops delivering: the PCM's read now blocks inside alsa-lib
            await cap.until("report of deafness", lambda: cap.states)
            assert cap.reports[0][0] == {"state": "deaf", "reason": "no frames for 0.5 s", "device": "test_mic", "stream": "capture"}

            loop = asyncio.get_running_loop()
            yielded, since = len(cap.chunks), loop.time()
            await asyncio.sleep(1.0)
            zeros = cap.chunks[yielded:]
            expected = (loop.time() - since) / (PERIOD / RATE)
            assert 0.5 * expected <= len(zeros) <= expected + 2, (len(zeros), expected)  # real time, not a burst
            assert not any(chunk.any() for chunk in zeros)
            health = cap.source.health()
            assert health["state"] == "deaf" and health["seconds_since_frame"] >= 1.0

            rig.mic.playing.set()
            await cap.until("recovery", lambda: cap.sound_after("ok"))
            assert cap.states == ["deaf", "reopening", "ok"]
            assert cap.source.health()["reopens"] == 1
            cap.kept_pace()

    run(scenario)


def test_device_that_disappears_and_returns(rig: Rig) -> None:
    async def scenario() -> None:
        async with Capture(settings(deaf_after=0.5, reopen_backoff_cap=0.5)) as cap:
            await cap.until("sound", lambda: any(chunk.any() for chunk in cap.chunks))
            rig.plug(False)  # unplugged: the name is gone and nothing arrives
            rig.mic.playing.clear()
            await cap.until("report of deafness", lambda: cap.states)
            # The file plugin's read blocks on the empty FIFO (a real device fails its read instead);
            # sound wakes it, so the dead PCM is closed and the reopen attempts begin.
            rig.mic.playing.set()
            await cap.until("failed reopens", lambda: cap.source.health()["failed_opens"] >= 2)
            health = cap.source.health()
            assert health["state"] == "reopening" and health["reopens"] == 0
            assert health["reason"].startswith("reopen failed: ") and "test_mic" in health["reason"]
            assert cap.states == ["deaf", "reopening"]  # attempts are counted, not reported
            yielded = len(cap.chunks)
            await cap.until("chunks while reopening", lambda: len(cap.chunks) >= yielded + 3)
            assert not any(chunk.any() for chunk in cap.chunks[yielded:])

            rig.plug(True)  # plugged back in
            await cap.until("recovery", lambda: cap.sound_after("ok"))
            assert cap.states == ["deaf", "reopening", "ok"]
            health = cap.source.health()
            assert health["state"] == "ok" and health["reopens"] == 1 and health["failed_opens"] >= 2
            cap.kept_pace()

    run(scenario)


def test_a_device_missing_at_start_is_reported_and_used_once_it_appears(rig: Rig) -> None:
    """No sound card at boot (a HAT not fitted yet): the service runs on zeros, says so, and keeps trying."""
    rig.plug(False)

    async def scenario() -> None:
        async with Capture(settings(reopen_backoff_cap=0.5)) as cap:
            await cap.until("zeros while unavailable", lambda: len(cap.chunks) >= 10)
            report = cap.reports[0][0]
            assert report["state"] == "unavailable" and report["stream"] == "capture"
            assert "cannot open ALSA capture device 'test_mic'" in report["reason"] and "arecord -L" in report["reason"]
            assert not any(chunk.any() for chunk in cap.chunks)
            await cap.until("more failed attempts", lambda: cap.source.health()["failed_opens"] >= 3)
            assert cap.states == ["unavailable"]  # retries are counted, not reported one by one
            rig.plug(True)
            await cap.until("sound from the device once it is there", lambda: cap.sound_after("ok"))
            assert cap.states == ["unavailable", "ok"]

    run(scenario)


def test_a_playback_device_missing_at_start_drops_audio_and_opens_later(rig: Rig, tmp_path: Path) -> None:
    reports: list[dict] = []
    out = tmp_path / "speaker.raw"

    async def scenario() -> None:
        player = AlsaPlayer("test_speaker", RATE, 80, on_health=reports.append, retry=0.2)
        try:
            assert player.health()["state"] == "unavailable" and "aplay -L" in player.health()["reason"]
            player.play(TONE, RATE)  # nowhere to play it: dropped at once, nothing waits for it
            await asyncio.wait_for(player.drain(), 2)
            assert not player.busy and player.health()["dropped_s"] == pytest.approx(PERIOD / RATE)
            conf = rig.conf.read_text() + (
                f'pcm.test_speaker {{ type file slave.pcm "null" file "{out}" format "raw" }}\n')
            rig.conf.with_suffix(".new").write_text(conf)
            os.replace(rig.conf.with_suffix(".new"), rig.conf)
            await asyncio.sleep(0.3)  # past the retry interval
            player.play(TONE, RATE)
            await asyncio.wait_for(player.drain(), 5)
        finally:
            player.close()
        assert [r["state"] for r in reports] == ["unavailable", "ok"]
        assert player.health()["state"] == "ok"
        assert out.stat().st_size >= PERIOD * 2  # the second tone reached the device

    run(scenario)


def test_closing_while_a_read_is_blocked_is_bounded(rig: Rig) -> None:
    async def scenario() -> None:
        cap = Capture(settings(deaf_after=0.5))
        task = asyncio.create_task(cap.pull(), name="test-pull")
        await cap.until("sound", lambda: any(chunk.any() for chunk in cap.chunks))
        rig.mic.playing.clear()  # the read blocks inside alsa-lib from now on
        await cap.until("report of deafness", lambda: cap.states)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)  # the generator gives up on the blocked reader after a bounded join
        assert "audio-supervisor" not in [t.name for t in threading.enumerate()]

    run(scenario)
    rig.mic.playing.set()  # the blocked read returns; its thread closes the PCM and ends
    deadline = time.monotonic() + 5
    while any(t.name == "audio-capture" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "audio-capture" for t in threading.enumerate())
