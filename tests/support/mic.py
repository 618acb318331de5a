"""A microphone in real time, for `harken run` on ALSA (the hardware edge: there is no sound card).

alsa-lib's ``file`` plugin reads its ``infile`` as the captured audio; here that file is
a named pipe that a thread fills at the pace a real microphone would (80 ms at a time,
on a monotonic schedule), with a quiet room's noise between the recordings it is given.
The device reads it through its real ALSA capture path and plays to a WAV file through
the same plugin. Used by the tests and by tools/bench-panel.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

RATE = 16000
CHUNK = 1280


class PipeMic:
    def __init__(self, directory: Path, noise: float = 30.0) -> None:
        self.fifo = directory / "mic.fifo"
        os.mkfifo(self.fifo)
        self.speaker = directory / "speaker.wav"
        self.asound = directory / "asound.conf"
        self.asound.write_text(f"""
pcm.null {{ type null }}
pcm.test_mic {{ type file slave.pcm "null" file "/dev/null" infile "{self.fifo}" format "raw" }}
pcm.test_speaker {{ type file slave.pcm "null" file "{self.speaker}" format "wav" }}
""")
        self.noise = noise
        self._queue: queue.Queue[np.ndarray] = queue.Queue()
        self._stop = threading.Event()
        self.written = 0
        """Samples written so far."""
        self._thread = threading.Thread(target=self._run, name="pipe-mic", daemon=True)

    config = '[audio]\ncapture_device = "test_mic"\nplayback_device = "test_speaker"\ncapture_rate = 16000\nplayback_rate = 22050\n'
    """The [audio] section that points harken at this microphone and speaker."""

    def env(self) -> dict[str, str]:
        return {"ALSA_CONFIG_PATH": str(self.asound)}

    def start(self) -> None:
        self._thread.start()

    def say(self, pcm: np.ndarray) -> float:
        """Queue a recording (16 kHz int16); returns about how many seconds until it has been spoken."""
        self._queue.put(pcm)
        return (sum(len(p) for p in list(self._queue.queue))) / RATE + 0.2

    def idle(self) -> bool:
        return self._queue.empty()

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        pending = np.zeros(0, dtype=np.int16)
        try:
            with open(self.fifo, "wb") as out:  # blocks until harken opens its capture device
                start = time.monotonic()
                while not self._stop.is_set():
                    if len(pending) < CHUNK and not self._queue.empty():
                        pending = np.concatenate([pending, self._queue.get()])
                    chunk = pending[:CHUNK]
                    pending = pending[len(chunk):]
                    room = rng.normal(0, self.noise, CHUNK)
                    room[: len(chunk)] += chunk
                    out.write(np.clip(room, -32768, 32767).astype("<i2").tobytes())
                    out.flush()
                    self.written += CHUNK
                    delay = start + self.written / RATE - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except (BrokenPipeError, OSError):
            return  # harken closed its capture device (stopped)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
