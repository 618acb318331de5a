"""Where things are, for every tier: computed once here, never from a test file's own location."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
"""tests/"""
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
DATA = TESTS / "data"
PACKAGE = REPO / "firmware" / "harken"
"""The harken package's source."""
ASSETS = PACKAGE / "assets"
DEMO = ASSETS / "demo.wav"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
