"""Wake word detection: openWakeWord's three ONNX models, streamed on onnxruntime.

The models come from the openwakeword 0.5.1 package (see ``models/catalog.py``),
but not its Python code: importing that pulls scikit-learn, scipy and tqdm into
the wake worker (about 90 MB and 2 s) and its per-frame bookkeeping costs idle
CPU. This module runs the same feature pipeline, score for score:

1. melspectrogram.onnx turns int16 samples (as float32, unscaled) into rows of
   32 mel bins, one per 10 ms hop over 512-sample windows; each row is mapped
   to ``row / 10 + 2``. Every 80 ms frame is sent with the last 480 samples of
   the frame before it, which gives exactly its 8 new rows (the stream's first
   frame, without that context, gives 5);
2. embedding_model.onnx reads the newest 76 rows after every frame and makes
   one 96-value embedding;
3. the wake model reads the newest 16 embeddings and gives the frame's score.

Before the stream has filled them, the 76 rows are ones and the 16 embeddings
come from noise (see ``WakeDetector``), and the first 5 scores are reported as
0, all as openWakeWord does.

With ``noise_suppression`` (``[wake] noise_suppression``, on by default) each
frame also goes through Speex's noise suppressor (10 ms at a time, as
openWakeWord's ``enable_speex_noise_suppression`` does), and while the room is
noisy (see ``NoiseSuppressor``) a second stream of features scores the
suppressed audio beside the microphone's: the frame's score is the higher of
the two. Neither audio alone is best: Speex lifts some wake words out of noise
and sinks others (in music, babble, or under a quiet room's faint hiss), and the
better ear found 4–6 more of 48 in noise at 10 dB than either (tools/bench-listen).
The second ear doubles the models' work, only while the room is noisy. Only the
wake word hears the suppressed audio (the VADs and the request get the microphone's).
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np

from harken.config import Settings
from harken.hw import budget
from harken.models.resolve import Resolved, resolve

FRAME = 1280
"""One score per 80 ms frame (1280 samples at 16 kHz)."""
CONTEXT = 480
"""Samples of the previous frame that each melspectrogram call sees again (3 hops of 160)."""
WINDOW = 76
"""Mel rows per embedding (the embedding model's fixed input)."""
WARMUP = 5
"""The first scores of a stream are reported as 0, as openWakeWord does."""
NOISE_SEED = 0
"""Seed of the noise whose embeddings fill the feature window of a new stream."""
NOISE_SAMPLES = 4 * 16000
NOISE_LEVEL = 1000
"""The noise is ``NOISE_SAMPLES`` integers drawn uniformly from [-NOISE_LEVEL, NOISE_LEVEL)."""
_STEP = 8
"""Mel rows between the noise's embeddings (one frame's worth)."""
NOISE_FILE = Path(__file__).resolve().parents[1] / "assets" / "wake-noise.npy"
"""The noise's embeddings, made by ``tools/make-wake-goldens`` with :meth:`WakeDetector.embed_noise`."""
_SPARE_FRAMES = 32
"""How many frames the ring buffers take before they move their tail to the front."""
NS_FRAME = 160
"""Samples per call of the Speex noise suppressor (10 ms), as openWakeWord sets it up."""
FLOOR_BLOCK = 8
"""Speex frames per block (80 ms) whose RMS the noise floor is the lowest of."""
FLOOR_BLOCKS = 38
"""Blocks the noise floor looks back over (about 3 s)."""
QUIET_ON, QUIET_OFF = 50.0, 35.0
"""Noise floor (RMS of int16 samples: -56 and -59 dBFS) from which the room counts as noisy, and
below which it is quiet again (the gap keeps a floor near the line from switching back and forth).
A quiet room's microphone hiss (-80 to -60 dBFS) stays below it: there Speex has nothing to take out."""


class NoiseSuppressor:
    """Speex's noise suppression (the ``speexdsp-ns`` package) over a stream of any chunk sizes,
    and whether the room is noisy.

    Speex works on whole 10 ms frames: a chunk's last partial frame waits for the
    next chunk, so the output may lag the input by up to 159 samples (never for
    the microphone's 80 ms chunks, which are whole frames).

    ``noisy``: whether the noise floor (the quietest 80 ms block of the last 3 s)
    is above ``QUIET_ON`` (and until it falls below ``QUIET_OFF``), decided at the
    end of each block from the input; a new stream starts as noisy.
    """

    def __init__(self) -> None:
        from speexdsp_ns import NoiseSuppression  # the wake worker's: importing this module stays cheap

        self._make = lambda: NoiseSuppression.create(NS_FRAME, 16000)
        self.reset()

    def reset(self) -> None:
        """A new stream: Speex's noise estimate and the noise floor start again."""
        self._ns = self._make()
        self._pending = np.zeros(0, dtype=np.int16)
        self._block_energy, self._block_frames = 0.0, 0
        self._blocks: deque[float] = deque(maxlen=FLOOR_BLOCKS)
        self.noisy = True

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if len(self._pending):
            pcm = np.concatenate([self._pending, pcm])
        whole = len(pcm) - len(pcm) % NS_FRAME
        self._pending = pcm[whole:].copy()
        if not whole:
            return pcm[:0]
        frames = pcm[:whole].reshape(-1, NS_FRAME).astype(np.float64)
        for energy in np.einsum("ij,ij->i", frames, frames) / NS_FRAME:
            self._track(float(energy))
        data = pcm[:whole].tobytes()
        step = NS_FRAME * 2
        out = b"".join(self._ns.process(data[i : i + step]) for i in range(0, len(data), step))
        return np.frombuffer(out, dtype=np.int16)

    def _track(self, energy: float) -> None:
        self._block_energy += energy
        self._block_frames += 1
        if self._block_frames == FLOOR_BLOCK:
            self._blocks.append(math.sqrt(self._block_energy / FLOOR_BLOCK))
            self._block_energy, self._block_frames = 0.0, 0
            floor = min(self._blocks)
            if self.noisy and floor < QUIET_OFF:
                self.noisy = False
            elif not self.noisy and floor >= QUIET_ON:
                self.noisy = True


class _Ear:
    """One stream of features (the previous frame's tail, mel rows, embeddings) over a detector's
    sessions: the detector has one for the microphone's audio and, in a noisy room, one for the
    suppressed audio."""

    def __init__(self, detector: WakeDetector, bins: int, dims: int) -> None:
        self.detector = detector
        self.audio = np.zeros(CONTEXT + FRAME, dtype=np.float32)  # the previous frame's tail, then this frame
        self.mel = np.empty((WINDOW + _SPARE_FRAMES * _STEP, bins), dtype=np.float32)
        self.features = np.empty((detector._inputs + _SPARE_FRAMES, dims), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self.frames = 0  # frames scored in this stream
        self.mel[:WINDOW] = 1.0
        self.mel_end = WINDOW
        inputs = self.detector._inputs
        self.features[:inputs] = self.detector._noise_features
        self.features_end = inputs

    def score(self, frame: np.ndarray) -> float:
        """The score of the next 80 ms frame (int16)."""
        d = self.detector
        self.audio[CONTEXT:] = frame
        rows = d._melspectrogram(self.audio if self.frames else self.audio[CONTEXT:])
        self.audio[:CONTEXT] = self.audio[FRAME:]
        n = len(rows)
        if self.mel_end + n > len(self.mel):
            self.mel[:WINDOW] = self.mel[self.mel_end - WINDOW : self.mel_end]
            self.mel_end = WINDOW
        self.mel[self.mel_end : self.mel_end + n] = rows
        self.mel_end += n

        window = self.mel[self.mel_end - WINDOW : self.mel_end]
        name, out = d._embed_io
        embedding = d._embed_model.run(out, {name: window[None, :, :, None]})[0]
        if self.features_end == len(self.features):
            self.features[: d._inputs] = self.features[self.features_end - d._inputs :]
            self.features_end = d._inputs
        self.features[self.features_end] = embedding.reshape(-1)
        self.features_end += 1

        name, out = d._wake_io
        features = self.features[self.features_end - d._inputs : self.features_end]
        score = d._wake_model.run(out, {name: features[None]})[0]
        self.frames += 1
        return 0.0 if self.frames <= WARMUP else float(score.reshape(-1)[0])


class WakeDetector:
    """One audio stream at a time through the three models, one score per 80 ms frame.

    A new stream (a new detector, or ``reset()``) starts from a fixed state. The
    wake model only ever reads the newest 16 embeddings, and each frame adds one,
    so from the stream's 16th frame (1.28 s) on every score depends on the stream's
    audio alone. Until then, part of the window is whatever the feature buffer
    started with: openWakeWord fills it with the embeddings of 4 s of random noise
    (new noise on every start, so its scores on the first second vary from run to
    run), which matters for a short recording such as the readiness probes, where
    the wake phrase falls in that first second. Here the noise is the same every
    time: the numbers numpy's legacy generator (whose stream numpy keeps stable)
    draws with ``NOISE_SEED``, i.e. exactly what openWakeWord would draw after
    ``np.random.seed(NOISE_SEED)``; so our scores equal its scores under that seed
    from the first frame (``tools/make-wake-goldens``). The noise embeddings
    depend only on the (fixed, catalogued) melspectrogram and embedding models, so
    they are computed once by ``tools/make-wake-goldens`` (:meth:`embed_noise`)
    and shipped as ``assets/wake-noise.npy`` (16 KB): computing them at start-up
    took 0.1 s and 27 MB of the wake worker's peak memory.
    """

    def __init__(self, model_path: Path, melspec: Path, embedding: Path, threads: int = 1,
                 noise: np.ndarray | None = None, noise_suppression: bool = False,
                 suppressed_only: bool = False) -> None:
        """``noise``: the noise embeddings to start streams with (default: ``NOISE_FILE``'s);
        ``noise_suppression``: a second ear on Speex's suppressed audio while the room is noisy, the
        frame's score the higher of the two; ``suppressed_only``: only the suppressed audio, on every
        frame, as openWakeWord's ``enable_speex_noise_suppression`` (for comparing with it)."""
        from harken.engines import ort  # onnxruntime is the worker's: importing this module stays cheap

        self._mel_model, self._embed_model, self._wake_model = (
            ort.session(path, threads, arena=False) for path in (melspec, embedding, model_path))
        self._mel_io = self._mel_model.get_inputs()[0].name, [self._mel_model.get_outputs()[0].name]
        self._embed_io = self._embed_model.get_inputs()[0].name, [self._embed_model.get_outputs()[0].name]
        self._wake_io = self._wake_model.get_inputs()[0].name, [self._wake_model.get_outputs()[0].name]
        self._inputs = int(self._wake_model.get_inputs()[0].shape[1])  # embeddings per score: 16
        bins = int(self._mel_model.get_outputs()[0].shape[-1])
        dims = int(self._embed_model.get_outputs()[0].shape[-1])
        if noise is None:
            noise = np.load(NOISE_FILE)
        if noise.ndim != 2 or noise.shape[1] != dims or len(noise) < self._inputs:
            raise ValueError(f"{NOISE_FILE} holds {noise.shape} noise embeddings, not {self._inputs} of {dims}: "
                             "regenerate it with tools/make-wake-goldens")
        self._noise_features = noise[-self._inputs :].astype(np.float32)

        self._frame = np.zeros(FRAME, dtype=np.int16)
        self._ear = _Ear(self, bins, dims)
        self._suppressor = NoiseSuppressor() if noise_suppression or suppressed_only else None
        self._suppressed_only = suppressed_only
        self._clean_ear = _Ear(self, bins, dims) if noise_suppression and not suppressed_only else None
        self.reset()

    def reset(self) -> None:
        """Start a new stream: the same state as a new detector, with the same sessions."""
        self._filled = 0  # samples of the current frame received so far
        self._ear.reset()
        if self._clean_ear is not None:
            self._clean_ear.reset()
        if self._suppressor is not None:
            self._suppressor.reset()

    def process(self, pcm: np.ndarray) -> list[float]:
        """Feed int16 audio at 16 kHz, any length; return one score per completed 80 ms frame.

        The models run once per frame even when a call completes several: the
        melspectrogram model gives slightly different numbers (float rounding) for
        longer inputs, so batching would make the scores depend on the chunk size.
        """
        if pcm.dtype != np.int16:
            raise ValueError(f"wake detector needs int16 samples, not {pcm.dtype}")
        if self._suppressed_only and self._suppressor is not None:
            pcm = self._suppressor.process(pcm)
        scores = []
        pos, total = 0, len(pcm)
        while pos < total:
            take = min(FRAME - self._filled, total - pos)
            self._frame[self._filled : self._filled + take] = pcm[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == FRAME:
                scores.append(self._score_frame(self._frame))
                self._filled = 0
        return scores

    def _score_frame(self, frame: np.ndarray) -> float:
        score = self._ear.score(frame)
        suppressor = self._suppressor
        if self._clean_ear is None or suppressor is None:
            return score
        listening = suppressor.noisy
        cleaned = suppressor.process(frame)  # whole Speex frames: nothing waits
        if listening:
            score = max(score, self._clean_ear.score(cleaned))
        elif suppressor.noisy:  # the room just turned noisy: the second ear starts a new stream
            self._clean_ear.reset()
        return score

    def _melspectrogram(self, samples: np.ndarray) -> np.ndarray:
        """Mel rows (n, bins) of float32 samples, already mapped to ``row / 10 + 2``."""
        name, out = self._mel_io
        rows = self._mel_model.run(out, {name: samples[None]})[0]
        rows = rows.reshape(-1, rows.shape[-1])
        rows /= 10  # openWakeWord's mapping, as it computes it in float32 (not * 0.1)
        rows += 2
        return rows

    def embed_noise(self) -> np.ndarray:
        """The embeddings of the noise that fills a new stream's feature window (every window's).

        Computed as openWakeWord does (one melspectrogram of the whole noise, the
        embeddings of all its windows 8 rows apart in one batch), so that the
        numbers are the same to the last bit. Only ``tools/make-wake-goldens`` and
        the tests call this; detectors read the result from ``NOISE_FILE``.
        """
        noise = np.random.RandomState(NOISE_SEED).randint(-NOISE_LEVEL, NOISE_LEVEL, NOISE_SAMPLES)
        mel = self._melspectrogram(noise.astype(np.float32))
        windows = np.stack([mel[i : i + WINDOW] for i in range(0, len(mel) - WINDOW + 1, _STEP)])
        name, out = self._embed_io
        embeddings = self._embed_model.run(out, {name: windows[..., None]})[0]
        return embeddings.reshape(len(windows), -1).copy()


def load(settings: Settings, data_dir: Path) -> WakeDetector:
    return from_files(settings, resolve("wake", settings.wake.model, data_dir))


def from_files(settings: Settings, model: Resolved) -> WakeDetector:
    f = model.files
    return WakeDetector(f["model"], f["melspectrogram"], f["embedding"], threads=budget.plan(settings).wake,
                        noise_suppression=settings.wake.noise_suppression)
