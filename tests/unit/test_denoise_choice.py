"""Request clean-up ([asr] denoise): what `auto` chooses on each board profile, and that `on` and `off` are kept.
Settings only: no model and no audio."""

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
