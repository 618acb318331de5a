import asyncio
import wave

import numpy as np
import pytest

from harken.audio.files import CHUNK, FileSource, TimelinePlayer
from harken.audio.resample import resample
from harken.audio.ring import RingBuffer
from harken.audio.wav import read_wav, write_wav
from harken.errors import AudioError


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)


def test_piper_rate_converts_with_the_exact_ratio():
    out = resample(tone(1.0, 22050), 22050, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the pitch survived


def test_reads_stereo_8bit_and_other_rates_as_mono_int16(tmp_path):
    path = tmp_path / "stereo8.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(1)
        wf.setframerate(8000)
        wf.writeframes(np.full(1600, 200, dtype=np.uint8).tobytes())
    pcm, rate = read_wav(path)
    assert rate == 8000 and len(pcm) == 800 and pcm.dtype == np.int16
    assert np.all(pcm == (200 - 128) << 8)


def test_bad_audio_files_say_what_to_do(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError, match="not a PCM WAV file.*sox"):
        read_wav(junk)
    junk.write_bytes(b"RIFF....WAVEnot really")  # a chunk whose size runs past the end: the wave module's RuntimeError
    with pytest.raises(AudioError, match="not a PCM WAV file.*sox"):
        read_wav(junk)
    with pytest.raises(AudioError, match="no such file"):
        read_wav(tmp_path / "missing.wav")


def test_file_source_resamples_and_pads_the_last_chunk(tmp_path):
    path = tmp_path / "in.wav"
    write_wav(path, tone(1.0, 44100), 44100)

    async def collect():
        return [c async for c in FileSource(path, paced=False).chunks()]

    chunks = asyncio.run(asyncio.wait_for(collect(), 10))
    assert all(len(c) == CHUNK for c in chunks)
    assert len(chunks) == -(-16000 // CHUNK)


def test_ring_buffer_wraps_and_forgets_old_audio():
    ring = RingBuffer(10)
    ring.append(np.arange(7, dtype=np.int16))
    ring.append(np.arange(7, 14, dtype=np.int16))
    assert ring.end == 14 and ring.start == 4
    assert ring.read(0, 14).tolist() == list(range(4, 14))
    assert ring.read(8, 12).tolist() == [8, 9, 10, 11]
    ring.append(np.arange(14, 40, dtype=np.int16))  # more than the capacity at once
    assert ring.end == 40 and ring.read(30, 40).tolist() == list(range(30, 40))


def test_timeline_player_lines_up_with_input_and_cuts_at_barge_in(tmp_path):
    out = tmp_path / "out.wav"
    player = TimelinePlayer(out, 16000)
    player.advance(16000)
    assert player.play(np.full(16000, 1000, dtype=np.int16), 16000) == 16000
    assert player.busy and player.horizon == 32000
    player.advance(24000)  # half a second played …
    player.cancel()  # … then barge-in
    assert not player.busy
    player.advance(40000)
    player.close(total_input=48000)
    pcm, rate = read_wav(out)
    assert len(pcm) == 48000
    assert np.all(pcm[:16000] == 0) and np.all(pcm[16000:24000] == 1000) and np.all(pcm[24000:] == 0)


def test_reads_float_wav(tmp_path):
    import struct

    samples = (np.sin(np.arange(1600) / 10) * 0.5).astype("<f4")
    data = samples.tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    pcm, rate = read_wav(path)
    assert rate == 16000 and len(pcm) == 1600
    assert abs(int(pcm.max()) - 16384) < 50


def test_ring_buffer_restart_starts_a_new_stream_at_an_index():
    ring = RingBuffer(8)
    ring.append(np.arange(5, dtype=np.int16))
    ring.restart(100)
    assert ring.start == ring.end == 100 and ring.read(0, 200).size == 0
    ring.append(np.arange(3, dtype=np.int16))
    assert ring.read(0, 200).tolist() == [0, 1, 2] and ring.start == 100
