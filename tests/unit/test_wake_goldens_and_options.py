"""The wake engine against openWakeWord 0.5.1's own scores, on the bundled probe recordings.

The goldens (tests/data/wake-goldens.json) were made by tools/make-wake-goldens
with openWakeWord's Model; these tests need only numpy and onnxruntime.
"""

from __future__ import annotations

import json

from harken.engines import wake
from support.paths import DATA

GOLDENS = json.loads((DATA / "wake-goldens.json").read_text(encoding="utf-8"))


def test_goldens_were_made_with_our_noise_seed():
    assert GOLDENS["openwakeword"] == "0.5.1" and GOLDENS["noise_seed"] == wake.NOISE_SEED


def test_session_options_run_sequentially_without_spinning():
    from harken.engines.ort import session_options

    opts = session_options(2)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    assert opts.execution_mode.name == "ORT_SEQUENTIAL"
    for pool in ("intra", "inter"):
        assert opts.get_session_config_entry(f"session.{pool}_op.allow_spinning") == "0"
    assert session_options(1, spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
