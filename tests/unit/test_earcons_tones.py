"""Earcons: the built-in tones, replacements, and the wake tone heard back by the microphone."""

from __future__ import annotations

import numpy as np
import pytest

from harken.audio.earcons import MAX_SECONDS, Earcons
from harken.audio.wav import write_wav
from harken.config import SoundSettings
from harken.errors import AudioError


def test_built_in_tones_are_short_click_free_and_at_the_set_volume():
    ears = Earcons.load(SoundSettings(volume=0.5))
    for sound, longest in ((ears.wake, 0.2), (ears.error, 0.35)):
        assert sound is not None and 0.1 < len(sound.pcm) / sound.rate < longest
        assert abs(int(sound.pcm[0])) < 200 and abs(int(sound.pcm[-1])) < 200  # faded in and out: no click
        assert 0.45 * 32767 < np.abs(sound.pcm).max() <= 0.5 * 32767 + 1
    wake_pitch = np.argmax(np.abs(np.fft.rfft(ears.wake.pcm.astype(float))))
    error_pitch = np.argmax(np.abs(np.fft.rfft(ears.error.pcm.astype(float))))
    assert wake_pitch > error_pitch  # a rising, bright wake tone; a lower error tone


def test_off_and_replacement_files(tmp_path):
    mine = tmp_path / "ding.wav"
    write_wav(mine, (np.sin(np.arange(8000) / 5) * 9000).astype(np.int16), 16000)
    ears = Earcons.load(SoundSettings(wake=str(mine), error="off"))
    assert ears.error is None and ears.wake.rate == 16000 and len(ears.wake.pcm) == 8000


@pytest.mark.parametrize("content, message", [
    (b"not a wav at all", "not a PCM WAV file"),
    (None, f"at most {MAX_SECONDS:.0f} s"),
])
def test_a_replacement_that_cannot_be_used_names_the_setting(tmp_path, content, message):
    bad = tmp_path / "bad.wav"
    if content is None:
        write_wav(bad, np.zeros(3 * 16000, dtype=np.int16), 16000)
    else:
        bad.write_bytes(content)
    with pytest.raises(AudioError, match=r"\[sounds\] wake") as err:
        Earcons.load(SoundSettings(wake=str(bad)))
    assert message in str(err.value)
