"""The thermal guard on fixture thermal zones and an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from harken.config import ThermalSettings
from harken.hw.thermal import Level, ThermalGuard

LIMITS = ThermalSettings(hot=75.0, critical=82.0, hysteresis=5.0, cool_for=30.0, hot_max_tokens=32)


class Board:
    """A /sys tree with a Pi's CPU zone and a cooler zone beside it; and a clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.t = 1000.0
        for n, kind, milli in ((0, "cpu-thermal", 45000), (1, "gpu-thermal", 30000)):
            zone = root / "class" / "thermal" / f"thermal_zone{n}"
            zone.mkdir(parents=True)
            (zone / "type").write_text(kind + "\n")
            (zone / "temp").write_text(f"{milli}\n")

    def cpu(self, celsius: float) -> None:
        (self.root / "class" / "thermal" / "thermal_zone0" / "temp").write_text(f"{int(celsius * 1000)}\n")

    def clock(self) -> float:
        return self.t


@pytest.fixture
def board(tmp_path):
    return Board(tmp_path / "sys")


def guard(board, settings=LIMITS):
    return ThermalGuard(settings, board.root, clock=board.clock)


def test_levels_rise_at_once(board):
    g = guard(board)
    assert not g.update() and g.level is Level.NORMAL and g.celsius == 45.0
    board.cpu(76.5)
    assert g.update() and g.level is Level.HOT
    assert g.max_tokens(80) == 32 and g.max_tokens(20) == 20
    board.cpu(90.0)
    assert g.update() and g.level is Level.CRITICAL
    assert g.describe() == {"level": "critical", "celsius": 90.0, "hot": 75.0, "critical": 82.0}


def test_a_level_is_left_only_after_cooling_below_the_hysteresis_for_long_enough(board):
    g = guard(board)
    board.cpu(84.0)
    g.update()
    # Just under the limit, inside the hysteresis: still critical, however long.
    board.cpu(79.0)
    for _ in range(10):
        board.t += 30
        assert not g.update() and g.level is Level.CRITICAL
    # Below the limit less the hysteresis, but not for cool_for seconds yet.
    board.cpu(76.0)
    board.t += 1
    assert not g.update()
    board.t += 29.5
    assert not g.update() and g.level is Level.CRITICAL
    # A reading above the line again restarts the wait.
    board.cpu(78.0)
    board.t += 1
    assert not g.update()
    board.cpu(76.0)
    board.t += 1
    g.update()
    board.t += 25
    assert not g.update()
    board.t += 6
    assert g.update() and g.level is Level.HOT  # 76 °C is still hot: one level down, not two
    board.cpu(60.0)
    board.t += 1
    assert not g.update()
    board.t += 31
    assert g.update() and g.level is Level.NORMAL and g.max_tokens(80) == 80


def test_flapping_at_a_limit_does_not_flip_the_level(board):
    g = guard(board)
    changes = 0
    for i in range(40):
        board.cpu(74.8 if i % 2 else 75.2)
        board.t += 5
        changes += g.update()
    assert changes == 1 and g.level is Level.HOT


def test_an_unreadable_sensor_counts_as_cool(board):
    g = guard(board)
    board.cpu(95.0)
    g.update()
    assert g.level is Level.CRITICAL
    (board.root / "class" / "thermal" / "thermal_zone0" / "temp").write_text("garbage\n")
    (board.root / "class" / "thermal" / "thermal_zone1" / "temp").write_bytes(b"\xff\xfe")
    board.t += 1
    assert not g.update() and g.celsius is None
    board.t += 31
    assert g.update() and g.level is Level.NORMAL


def test_a_board_without_zones_stays_normal(tmp_path):
    g = ThermalGuard(LIMITS, tmp_path, clock=lambda: 0.0)
    assert not g.update() and g.level is Level.NORMAL and g.celsius is None
