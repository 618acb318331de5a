"""WAV files: read any PCM WAV as mono int16, write mono int16."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from harken.errors import AudioError


def _riff_chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        name, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.setdefault(name, data[pos + 8 : pos + 8 + size])
        pos += 8 + size + (size & 1)
    return chunks


def _read_float_or_extensible(path: Path) -> tuple[np.ndarray, int] | None:
    """WAV files that the wave module refuses: IEEE float, or PCM in WAVE_FORMAT_EXTENSIBLE."""
    try:
        chunks = _riff_chunks(path.read_bytes())
    except AudioError:
        return None
    fmt, data = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or data is None or len(fmt) < 16:
        return None
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the real tag
    if channels < 1:
        return None
    if tag != 3 or bits not in (32, 64):
        return None  # plain PCM is the wave module's; anything else is not audio we know
    samples = np.frombuffer(data[: len(data) - len(data) % (bits // 8)], dtype="<f4" if bits == 32 else "<f8")
    ints = np.clip(samples * 32768.0, -32768, 32767)
    usable = len(ints) - len(ints) % channels
    return ints[:usable].reshape(-1, channels).mean(axis=1).astype(np.int16), rate


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Return (mono int16 samples, sample rate); AudioError says what is wrong and how to fix it.

    Reads PCM of 8, 16, 24 or 32 bits and 32/64-bit float, any channel count
    (mixed down) and any rate (the caller resamples).
    """
    try:
        with wave.open(str(path), "rb") as wf:
            channels, width, rate, frames = wf.getnchannels(), wf.getsampwidth(), wf.getframerate(), wf.getnframes()
            raw = wf.readframes(frames)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (wave.Error, EOFError, RuntimeError) as exc:  # the wave module raises RuntimeError on a truncated chunk
        other = _read_float_or_extensible(path)
        if other is not None:
            return other
        raise AudioError(f"{path}: not a PCM WAV file ({exc}); convert it with e.g. `sox IN -b 16 OUT.wav`") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
    if channels == 1 and width == 2 and rate >= 1000:
        # The common case, and a long file's: no int32/float64 copies (a 40 s file peaked ~13 MB above its size).
        return np.frombuffer(raw, dtype="<i2").astype(np.int16), rate
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.int64) >> 16
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16
    else:
        raise AudioError(f"{path}: {width * 8}-bit samples are not supported; use 16-bit PCM")
    if channels < 1 or rate < 1000:
        raise AudioError(f"{path}: implausible header ({channels} channels, {rate} Hz)")
    usable = len(data) - len(data) % channels
    mono = data[:usable].reshape(-1, channels).mean(axis=1)
    return np.clip(mono, -32768, 32767).astype(np.int16), rate


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.astype("<i2").tobytes())


class WavWriter:
    """Append-only mono int16 WAV writer (the header is patched on close)."""

    def __init__(self, path: Path, rate: int) -> None:
        self.rate = rate
        self._wf = wave.open(str(path), "wb")
        self._wf.setnchannels(1)
        self._wf.setsampwidth(2)
        self._wf.setframerate(rate)
        self.frames = 0

    def write(self, pcm: np.ndarray) -> None:
        self._wf.writeframes(pcm.astype("<i2").tobytes())
        self.frames += len(pcm)

    def close(self) -> None:
        self._wf.close()
