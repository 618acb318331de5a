"""The Silero VAD on onnxruntime (harken.engines.vad) against sherpa-onnx's VoiceActivityDetector.

harken used sherpa-onnx's detector until it cost the wake worker a second ONNX
runtime; the replacement must report the same thing: after every chunk, the same
speech flag, start and completed segments (sample indices), and the same after
flush and reset. sherpa-onnx stays installed for the ASR, so both run side by
side here on real recordings, mixed with silence and noise, in chunks of many
sizes and with the settings the pipeline uses.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from harken.audio.wav import read_wav
from harken.config import Settings
from harken.engines import vad
from harken.engines.vad import Vad, VadState
from harken.models.catalog import entry, verified_paths
from support.paths import ASSETS

sherpa_onnx = pytest.importorskip("sherpa_onnx")

RATE = 16000
CLIPS = ["demo.wav", "probe-asr.wav"] + sorted(p.name for p in ASSETS.glob("probe-wake-*.wav"))


class Sherpa:
    """The reference: sherpa-onnx 2.0.1's detector, read the way harken read it."""

    def __init__(self, model: Path, threshold: float, min_silence: float, min_speech: float, max_speech: float) -> None:
        silero = sherpa_onnx.SileroVadModelConfig(
            model=str(model),
            threshold=threshold,
            min_silence_duration=min_silence,
            min_speech_duration=min_speech,
            window_size=512,
            max_speech_duration=max_speech,
        )
        config = sherpa_onnx.VadModelConfig(silero_vad=silero, sample_rate=RATE, num_threads=1)
        self._vad = sherpa_onnx.VoiceActivityDetector(config, buffer_size_in_seconds=max_speech + 10)

    def accept(self, pcm: np.ndarray) -> VadState:
        self._vad.accept_waveform(pcm.astype(np.float32) / 32768.0)
        return self._state()

    def flush(self) -> VadState:
        self._vad.flush()
        return self._state()

    def reset(self) -> None:
        self._vad.reset()

    def _state(self) -> VadState:
        segments = []
        while not self._vad.empty():
            seg = self._vad.front
            segments.append((int(seg.start), int(seg.start) + len(seg.samples)))
            self._vad.pop()
        speech = bool(self._vad.is_speech_detected())
        return VadState(speech, int(self._vad.current_segment.start) if speech else None, segments)


@pytest.fixture(scope="module")
def model() -> Path:
    (path,) = verified_paths(entry("vad", "silero-vad")).values()
    return path


def params(kind: str = "default", **over: float) -> dict[str, float]:
    """Vad arguments: the main VAD's defaults, the early VAD's silence, or a short max_speech."""
    settings = Settings()
    ls = settings.listen
    p = dict(
        threshold=ls.vad_threshold, min_silence=ls.endpoint_silence, min_speech=ls.min_speech, max_speech=ls.max_speech
    )
    if kind == "early":
        p["min_silence"] = vad.early_silence(settings)
    elif kind == "max2":
        p["max_speech"] = 2.0
    p.update(over)
    return p


def clip(name: str) -> np.ndarray:
    pcm, rate = read_wav(ASSETS / name)
    assert rate == RATE
    return pcm


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def noisy(pcm: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, len(pcm))
    return np.clip(pcm + noise, -32768, 32767).astype(np.int16)


def mix() -> np.ndarray:
    """Clips with silences of several lengths between them, about 15 s."""
    parts = [silence(0.7), clip("probe-asr.wav"), silence(1.3), clip("probe-wake-alexa.wav"), silence(0.3)]
    return np.concatenate(parts + [clip("demo.wav"), silence(2.0)])


def talk() -> np.ndarray:
    """Clips back to back with their silent edges cut: long stretches of speech, for max_speech."""
    names = ["demo.wav", "probe-asr.wav", "probe-wake-alexa.wav", "probe-wake-hey_jarvis.wav", "demo.wav"]
    return np.concatenate([silence(1.0)] + [clip(n)[4000:-3000] for n in names] + [silence(1.0)])


AUDIO = {
    "mix": mix,
    "mix+noise30": lambda: noisy(mix(), 30, 1),
    "mix+noise600": lambda: noisy(mix(), 600, 2),
}


def sizes(chunk: int | str, seed: int = 0) -> itertools.cycle[int] | itertools.repeat[int]:
    if chunk == "random":
        rng = np.random.default_rng(seed)
        return itertools.cycle(int(n) for n in rng.integers(1, 6000, 200))
    assert isinstance(chunk, int)
    return itertools.repeat(chunk)


def feed(v: Vad | Sherpa, pcm: np.ndarray, chunk: int | str = 1280, flush: bool = True) -> list[VadState]:
    states, pos = [], 0
    for n in sizes(chunk):
        if pos >= len(pcm):
            break
        states.append(v.accept(pcm[pos : pos + n]))
        pos += n
    if flush:
        states.append(v.flush())
    return states


def both(model: Path, p: dict[str, float], script) -> list[VadState]:
    """Run ``script(vad)`` on ours and on sherpa-onnx's; the states it returns must be equal."""
    ours, ref = script(Vad(model, **p)), script(Sherpa(model, **p))
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a == b, f"state {i} of {len(ref)}: ours {a}, sherpa-onnx {b}"
    return ours


def segments(states: list[VadState]) -> list[tuple[int, int]]:
    return [s for st in states for s in st.segments]


@pytest.mark.parametrize("kind", ["default", "early"])
@pytest.mark.parametrize("name", CLIPS)
def test_each_clip_in_wake_frames(model, name, kind):
    states = both(model, params(kind), lambda v: feed(v, clip(name)))
    assert segments(states), "the clip is speech: the comparison must not be between two silences"


@pytest.mark.parametrize("kind", ["default", "early", "max2"])
@pytest.mark.parametrize("chunk", [1280, 512, 1000, 4096, 16000, "random"])
@pytest.mark.parametrize("audio", list(AUDIO))
def test_mixes_in_chunks_of_any_size(model, audio, chunk, kind):
    pcm = AUDIO[audio]()
    states = both(model, params(kind), lambda v: feed(v, pcm, chunk))
    assert len(segments(states)) >= 3


@pytest.mark.parametrize("chunk", [1280, 700, 8000])
def test_long_speech_is_cut_at_max_speech(model, chunk):
    pcm = talk()
    short = both(model, params("max2"), lambda v: feed(v, pcm, chunk))
    long = both(model, params(), lambda v: feed(v, pcm, chunk))
    assert segments(short) != segments(long), "max_speech must have changed something"


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.8])
def test_other_thresholds(model, threshold):
    # 0.1: the threshold under which speech stops is clamped to 0.01
    pcm = noisy(mix(), 300, 3)
    both(model, params(threshold=threshold), lambda v: feed(v, pcm, 1280))


def test_odd_durations(model):
    p = dict(threshold=0.45, min_silence=0.35, min_speech=0.15, max_speech=3.3)
    both(model, p, lambda v: feed(v, noisy(mix(), 100, 4), 1280))


def test_stream_that_starts_in_speech(model):
    # without and with the listener's lead-in of silence
    pcm = clip("demo.wav")[20000:]
    both(model, params(), lambda v: feed(v, pcm))
    both(model, params("early"), lambda v: feed(v, np.concatenate([silence(0.5), pcm])))


def test_reset_and_reuse(model):
    a, b = noisy(mix(), 30, 5), clip("demo.wav")

    def script(v):
        first = feed(v, a)
        v.reset()
        again = feed(v, a)
        assert again == first
        feed(v, b[:30000], flush=False)  # reset in the middle of speech
        v.reset()
        return first + feed(v, b, 1000) + [v.flush(), v.flush()]

    both(model, params(), script)


def test_flush_in_the_middle_of_speech_then_go_on(model):
    demo = clip("demo.wav")

    def script(v):
        states = feed(v, demo[:32000], flush=False)
        states.append(v.flush())
        return states + feed(v, demo[32000:])

    states = both(model, params(), script)
    # sherpa-onnx starts a new segment late, then ends it before its start: it
    # reports "Invalid n" and hands out a segment with no samples
    assert (31744, 31744) in segments(states)


def test_tiny_and_empty_chunks(model):
    pcm = clip("probe-asr.wav")

    def script(v):
        states, pos = [], 0
        for n in itertools.cycle([0, 1, 63, 100, 575, 0, 2]):
            if pos >= len(pcm):
                break
            states.append(v.accept(pcm[pos : pos + n]))
            pos += n
        return states + [v.flush()]

    both(model, params("early"), script)


@pytest.mark.parametrize("seed", range(8))
def test_random_streams(model, seed):
    """Random settings, chunk sizes, flushes and resets."""
    rng = np.random.default_rng(seed)
    p = dict(
        threshold=float(rng.uniform(0.05, 0.95)),
        min_silence=float(rng.uniform(0.1, 1.5)),
        min_speech=float(rng.uniform(0.05, 1.0)),
        max_speech=float(rng.uniform(2.0, 5.0)),
    )
    sources = [mix(), noisy(mix(), 600, 6), talk()]
    pcm = sources[seed % 3][int(rng.integers(0, 80000)) :]
    ops = []
    pos = 0
    while pos < len(pcm):
        roll = rng.random()
        if roll < 0.03:
            ops.append(("flush", 0, 0))
        elif roll < 0.04:
            ops.append(("reset", 0, 0))
        else:
            n = int(rng.choice([rng.integers(0, 600), rng.integers(500, 3000), rng.integers(3000, 20000)]))
            ops.append(("accept", pos, pos + n))
            pos += n

    def script(v):
        states = []
        for op, a, b in ops:
            if op == "accept":
                states.append(v.accept(pcm[a:b]))
            elif op == "flush":
                states.append(v.flush())
            else:
                v.reset()
        return states + [v.flush()]

    both(model, p, script)


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.8])
def test_window_decisions(model, threshold):
    """Window by window, the model's verdict with min_speech and min_silence applied."""
    config = sherpa_onnx.VadModelConfig(
        silero_vad=sherpa_onnx.SileroVadModelConfig(
            model=str(model), threshold=threshold, min_silence_duration=0.2, min_speech_duration=0.25, window_size=512
        ),
        sample_rate=RATE,
        num_threads=1,
    )
    ref = sherpa_onnx.VadModel.create(config)
    assert ref.window_size() == vad.WINDOW
    ours = Vad(model, threshold, 0.2, 0.25, 15.0)
    audio = noisy(mix(), 300, 7).astype(np.float32) / 32768.0
    theirs, mine = [], []
    for pos in range(0, len(audio) - vad.WINDOW + 1, vad.SHIFT):
        window = audio[pos : pos + vad.WINDOW]
        theirs.append(ref.is_speech(window))
        mine.append(ours._window(window))
    assert mine == theirs
    assert any(mine) and not all(mine)


@pytest.mark.parametrize("seconds", [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.7, 1.1, 1.3, 2.9, 3.0])
def test_durations_in_samples(model, seconds):
    """Seconds become samples in float32, truncated, as in sherpa-onnx."""
    config = sherpa_onnx.VadModelConfig(
        silero_vad=sherpa_onnx.SileroVadModelConfig(
            model=str(model), min_silence_duration=seconds, min_speech_duration=seconds, window_size=512
        ),
        sample_rate=RATE,
        num_threads=1,
    )
    ref = sherpa_onnx.VadModel.create(config)
    ours = Vad(model, 0.5, seconds, seconds, 15.0)
    assert (ours._min_silence, ours._min_speech) == (
        ref.min_silence_duration_samples(),
        ref.min_speech_duration_samples(),
    )


def test_the_two_vads_share_one_session(model):
    settings = Settings()
    main, early = vad.load(settings, Path("/nonexistent")), vad.load(settings, Path("/nonexistent"), silence=0.2)
    assert main._session is early._session
    # and keep their own state: interleaved, each gives what it gives alone
    pcm = noisy(mix(), 30, 8)
    alone = feed(Vad(model, **params()), pcm)
    states = []
    for pos in range(0, len(pcm), 1280):
        states.append(main.accept(pcm[pos : pos + 1280]))
        early.accept(pcm[pos : pos + 1280])
    states.append(main.flush())
    assert states == alone
