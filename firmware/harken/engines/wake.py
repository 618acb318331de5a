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

With ``noise_suppression`` (``[wake] noise_suppression``, on by default) the
samples first go through Speex's noise suppressor on 10 ms frames, as
openWakeWord's ``enable_speex_noise_suppression`` does, except where the room
is quiet (see ``NoiseSuppressor``); only the wake word hears the suppressed
audio (the VADs and the request get the microphone's).
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
"""Noise floor (RMS of int16 samples: -56 and -59 dBFS) above which the wake word hears the
suppressed audio, and below which it hears the microphone's own again (the gap keeps a floor
near the line from switching back and forth). In a quiet room Speex only distorts speech: with
a faint hiss under it (-80 to -70 dBFS) some clean wake words scored below the threshold."""


class NoiseSuppressor:
    """Speex's noise suppression (the ``speexdsp-ns`` package) over a stream of any chunk sizes,
    used only where there is noise to suppress.

    Speex works on whole 10 ms frames: a chunk's last partial frame waits for the
    next chunk, so the output may lag the input by up to 159 samples (never for
    the microphone's 80 ms chunks, which are whole frames).

    With ``quiet_gate`` (the device's way), every frame still goes through Speex
    (its noise estimate keeps up with the room), but a frame is given back
    suppressed only while the noise floor (the quietest 80 ms block of the last
    3 s) is above ``QUIET_ON``, and as it came once the floor falls below
    ``QUIET_OFF``. Without it every frame is suppressed, as openWakeWord's
    ``enable_speex_noise_suppression`` does. The choice is made frame by frame,
    so the output does not depend on how the stream is cut into chunks.
    """

    def __init__(self, quiet_gate: bool = True) -> None:
        from speexdsp_ns import NoiseSuppression  # the wake worker's: importing this module stays cheap

        self._make = lambda: NoiseSuppression.create(NS_FRAME, 16000)
        self.quiet_gate = quiet_gate
        self.reset()

    def reset(self) -> None:
        """A new stream: Speex's noise estimate and the noise floor start again."""
        self._ns = self._make()
        self._pending = np.zeros(0, dtype=np.int16)
        self._block_energy, self._block_frames = 0.0, 0
        self._blocks: deque[float] = deque(maxlen=FLOOR_BLOCKS)
        self.suppressing = True
        """Whether the next frame will be given back suppressed (the stream's first block: yes)."""

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if len(self._pending):
            pcm = np.concatenate([self._pending, pcm])
        whole = len(pcm) - len(pcm) % NS_FRAME
        self._pending = pcm[whole:].copy()
        if not whole:
            return pcm[:0]
        data = pcm[:whole].tobytes()
        step = NS_FRAME * 2
        if not self.quiet_gate:
            out = b"".join(self._ns.process(data[i : i + step]) for i in range(0, len(data), step))
            return np.frombuffer(out, dtype=np.int16)
        frames = pcm[:whole].reshape(-1, NS_FRAME).astype(np.float64)
        energies = np.einsum("ij,ij->i", frames, frames) / NS_FRAME
        pieces = []
        for k, i in enumerate(range(0, len(data), step)):
            cleaned = self._ns.process(data[i : i + step])
            pieces.append(cleaned if self.suppressing else data[i : i + step])
            self._track(float(energies[k]))  # at a block's end: the choice for the next block
        return np.frombuffer(b"".join(pieces), dtype=np.int16)

    def _track(self, energy: float) -> None:
        self._block_energy += energy
        self._block_frames += 1
        if self._block_frames == FLOOR_BLOCK:
            self._blocks.append(math.sqrt(self._block_energy / FLOOR_BLOCK))
            self._block_energy, self._block_frames = 0.0, 0
            floor = min(self._blocks)
            if self.suppressing and floor < QUIET_OFF:
                self.suppressing = False
            elif not self.suppressing and floor >= QUIET_ON:
                self.suppressing = True


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
                 noise: np.ndarray | None = None, noise_suppression: bool = False, quiet_gate: bool = True) -> None:
        """``noise``: the noise embeddings to start streams with (default: ``NOISE_FILE``'s);
        ``noise_suppression``: Speex's suppressor in front of the models, ``quiet_gate``: only where
        the room is not quiet (see ``NoiseSuppressor``)."""
        from harken.engines import ort  # onnxruntime is the worker's: importing this module stays cheap

        self._mel_model, self._embed_model, self._wake_model = (
            ort.session(path, threads, arena=False) for path in (melspec, embedding, model_path))
        self._mel_io = self._mel_model.get_inputs()[0].name, [self._mel_model.get_outputs()[0].name]
        self._embed_io = self._embed_model.get_inputs()[0].name, [self._embed_model.get_outputs()[0].name]
        self._wake_io = self._wake_model.get_inputs()[0].name, [self._wake_model.get_outputs()[0].name]
        self._inputs = int(self._wake_model.get_inputs()[0].shape[1])  # embeddings per score: 16
        bins = int(self._mel_model.get_outputs()[0].shape[-1])
        dims = int(self._embed_model.get_outputs()[0].shape[-1])

        # The newest samples, mel rows and embeddings, each in a preallocated buffer
        # that is filled front to back and whose newest part is moved to the front
        # when it is full, so that every model input is a contiguous slice of it.
        self._audio = np.zeros(CONTEXT + FRAME, dtype=np.float32)  # the previous frame's tail, then this frame
        self._mel = np.empty((WINDOW + _SPARE_FRAMES * _STEP, bins), dtype=np.float32)
        self._features = np.empty((self._inputs + _SPARE_FRAMES, dims), dtype=np.float32)
        if noise is None:
            noise = np.load(NOISE_FILE)
        if noise.ndim != 2 or noise.shape[1] != dims or len(noise) < self._inputs:
            raise ValueError(f"{NOISE_FILE} holds {noise.shape} noise embeddings, not {self._inputs} of {dims}: "
                             "regenerate it with tools/make-wake-goldens")
        self._noise_features = noise[-self._inputs :].astype(np.float32)
        self._suppressor = NoiseSuppressor(quiet_gate) if noise_suppression else None
        self.reset()

    def reset(self) -> None:
        """Start a new stream: the same state as a new detector, with the same sessions."""
        self._filled = 0  # samples of the current frame received so far
        self._frames = 0  # frames scored in this stream
        self._mel[:WINDOW] = 1.0
        self._mel_end = WINDOW
        self._features[: self._inputs] = self._noise_features
        self._features_end = self._inputs
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
        if self._suppressor is not None:
            pcm = self._suppressor.process(pcm)
        scores = []
        pos, total = 0, len(pcm)
        while pos < total:
            take = min(FRAME - self._filled, total - pos)
            start = CONTEXT + self._filled
            self._audio[start : start + take] = pcm[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == FRAME:
                scores.append(self._score_frame())
                self._audio[:CONTEXT] = self._audio[FRAME:]
                self._filled = 0
        return scores

    def _score_frame(self) -> float:
        rows = self._melspectrogram(self._audio if self._frames else self._audio[CONTEXT:])
        n = len(rows)
        if self._mel_end + n > len(self._mel):
            self._mel[:WINDOW] = self._mel[self._mel_end - WINDOW : self._mel_end]
            self._mel_end = WINDOW
        self._mel[self._mel_end : self._mel_end + n] = rows
        self._mel_end += n

        window = self._mel[self._mel_end - WINDOW : self._mel_end]
        name, out = self._embed_io
        embedding = self._embed_model.run(out, {name: window[None, :, :, None]})[0]
        if self._features_end == len(self._features):
            self._features[: self._inputs] = self._features[self._features_end - self._inputs :]
            self._features_end = self._inputs
        self._features[self._features_end] = embedding.reshape(-1)
        self._features_end += 1

        name, out = self._wake_io
        features = self._features[self._features_end - self._inputs : self._features_end]
        score = self._wake_model.run(out, {name: features[None]})[0]
        self._frames += 1
        return 0.0 if self._frames <= WARMUP else float(score.reshape(-1)[0])

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
