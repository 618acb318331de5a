"""The wake engine against openWakeWord 0.5.1's own scores, on the bundled probe recordings.

The goldens (tests/data/wake-goldens.json) were made by tools/make-wake-goldens
with openWakeWord's Model; these tests need only numpy and onnxruntime.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harken.audio.wav import read_wav
from harken.config import Settings
from harken.engines import wake
from harken.hw import budget
from harken.models.resolve import resolve
from support.paths import ASSETS, DATA, REPO

GOLDENS = json.loads((DATA / "wake-goldens.json").read_text(encoding="utf-8"))
TOLERANCE = 1e-4


def clip(*names: str) -> np.ndarray:
    return np.concatenate([read_wav(ASSETS / name)[0] for name in names])


def settings_for(model: str, noise_suppression: bool = False) -> Settings:
    base = Settings()
    return dataclasses.replace(base, wake=dataclasses.replace(base.wake, model=model, noise_suppression=noise_suppression))


def make(model: str, noise_suppression: bool = False) -> wake.WakeDetector:
    """With Speex: the suppressed audio only, on every frame, as openWakeWord runs it (the device
    listens to it beside the microphone's, in a noisy room: test_wake_noise.py)."""
    f = resolve("wake", model, Path("/nonexistent")).files
    return wake.WakeDetector(f["model"], f["melspectrogram"], f["embedding"],
                             threads=budget.plan(settings_for(model, noise_suppression)).wake,
                             suppressed_only=noise_suppression)


@pytest.fixture(scope="module")
def detectors():
    made: dict[tuple[str, bool], wake.WakeDetector] = {}

    def get(model: str, noise_suppression: bool = False) -> wake.WakeDetector:
        key = (model, noise_suppression)
        if key not in made:
            made[key] = make(model, noise_suppression)
        made[key].reset()
        return made[key]

    return get


def test_shipped_noise_embeddings_are_what_the_models_compute(detectors):
    # assets/wake-noise.npy stands for openWakeWord's start-up computation; if the catalogued
    # melspectrogram or embedding model ever changes, this fails until the tool is re-run.
    # onnxruntime's kernels differ in the last bits between its releases and CPUs (1.32.0 moved them by
    # 2e-5), so "the same" is within the tolerance the scores are compared with.
    shipped = np.load(wake.NOISE_FILE)
    computed = detectors("hey_jarvis").embed_noise()
    assert shipped.shape == computed.shape and np.abs(shipped - computed).max() <= TOLERANCE


def test_a_wrong_noise_file_is_refused_with_the_fix(tmp_path):
    from harken.models.catalog import entry, verified_paths

    paths = verified_paths(entry("wake", "hey_jarvis"))
    model, mel, emb = paths.values()
    with pytest.raises(ValueError, match="regenerate it with tools/make-wake-goldens"):
        wake.WakeDetector(model, mel, emb, noise=np.zeros((3, 96), np.float32))


@pytest.mark.parametrize("case", GOLDENS["cases"],
                         ids=lambda c: f"{c['model']}-{'+'.join(c['clips'])}{'-speex' if c['noise_suppression'] else ''}")
def test_scores_match_openwakeword(detectors, case):
    """Score for score, with and without Speex noise suppression in front."""
    ours = np.array(detectors(case["model"], case["noise_suppression"]).process(clip(*case["clips"])))
    golden = np.array(case["scores"])
    assert ours.shape == golden.shape
    worst = int(np.argmax(np.abs(ours - golden)))
    assert abs(ours[worst] - golden[worst]) <= TOLERANCE, f"frame {worst}: {ours[worst]} vs openWakeWord's {golden[worst]}"


@pytest.mark.parametrize("speex", [False, True], ids=["raw", "speex"])
def test_chunk_size_does_not_change_the_scores(detectors, speex):
    pcm = clip("probe-wake-hey_jarvis.wav", "probe-asr.wav", "probe-wake-hey_jarvis.wav")
    detector = detectors("hey_jarvis", speex)
    whole = detector.process(pcm)
    assert len(whole) == len(pcm) // wake.FRAME
    for size in (wake.FRAME, 640, 3000, 1):
        if size == 1:
            pcm_part = pcm[: 3 * wake.FRAME + 17]  # sample by sample: a short piece is enough
            expected = whole[:3]
        else:
            pcm_part, expected = pcm, whole
        detector.reset()
        scores: list[float] = []
        for pos in range(0, len(pcm_part), size):
            scores += detector.process(pcm_part[pos : pos + size])
        assert scores == expected, f"chunks of {size}"


@pytest.mark.parametrize("speex", [False, True], ids=["raw", "speex"])
def test_reset_starts_a_fresh_stream(detectors, speex):
    """Also the noise suppressor's state: its noise estimate starts again."""
    jarvis = clip("probe-wake-hey_jarvis.wav")
    fresh = make("hey_jarvis", speex).process(jarvis)
    detector = detectors("hey_jarvis", speex)
    detector.process(jarvis)
    detector.process(clip("probe-asr.wav")[:5000])  # ends mid-frame, with the wake word in the window
    detector.reset()
    assert detector.process(jarvis) == fresh


def test_fires_on_the_wake_phrase_and_not_on_a_question(detectors):
    detector = detectors("hey_jarvis")
    assert max(detector.process(clip("probe-wake-hey_jarvis.wav"))) > 0.5
    detector.reset()
    assert max(detector.process(clip("probe-asr.wav"))) < 0.1


def test_short_and_empty_input_give_no_scores(detectors):
    detector = detectors("hey_jarvis")
    assert detector.process(np.zeros(0, dtype=np.int16)) == []
    assert detector.process(np.zeros(wake.FRAME - 1, dtype=np.int16)) == []
    assert detector.process(np.zeros(1, dtype=np.int16)) == [0.0]  # the first 5 frames score 0
    with pytest.raises(ValueError):
        detector.process(np.zeros(wake.FRAME, dtype=np.float32))


def test_loading_imports_neither_openwakeword_nor_its_dependencies():
    code = (
        "import sys; from pathlib import Path; from harken.config import Settings; from harken.engines import wake\n"
        "wake.load(Settings(), Path('/nonexistent'))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openwakeword', 'sklearn', 'scipy', 'tqdm'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={"PYTHONPATH": str(REPO / "firmware"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stderr
