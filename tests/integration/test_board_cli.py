"""The real `harken board` command in a child process, on committed fixture trees of real boards' files: its JSON
and text reports, settings that clash or name an unknown profile, a forced Jetson profile; and that importing
hw/board loads no engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import FIXTURES, REPO

BOARDS = FIXTURES / "boards"
CLI_TIMEOUT = 120


def test_the_module_imports_no_engine():
    code = "import sys, harken.hw.board; print(sorted(m for m in ('onnxruntime', 'llama_cpp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CLI_TIMEOUT, env=_env(), check=True)
    assert out.stdout.strip() == "[]"


# -- the real command ----------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "firmware"))


def harken_board(tmp_path: Path, *args: str, toml: str = "") -> subprocess.CompletedProcess:
    cfg = tmp_path / "harken.toml"
    cfg.write_text(toml)
    return subprocess.run([sys.executable, "-m", "harken", "board", "--config", str(cfg), "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, env=_env(), cwd=tmp_path)


def test_harken_board_json_on_a_pi_5s_files(tmp_path):
    proc = harken_board(tmp_path, "--root", str(BOARDS / "rpi5"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["profile"], out["model"], out["forced"], out["cores"]) == ("rpi5", "Raspberry Pi 5 Model B Rev 1.0", False, 4)
    assert out["reasons"] == ["/proc/device-tree/compatible says 'raspberrypi,5-model-b': Raspberry Pi 5"]
    assert out["chosen"]["providers"] == ["CPUExecutionProvider"] and out["chosen"]["gpu_layers"] == 0


def test_harken_board_text_names_the_profile_the_reason_and_where_values_come_from(tmp_path):
    proc = harken_board(tmp_path, "--root", str(BOARDS / "rpi5"), toml='[board]\nbutton = "GPIO27"\n')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "board: rpi5 (Raspberry Pi 5, raspberry-pi)"
    assert "  /proc/device-tree/compatible says 'raspberrypi,5-model-b': Raspberry Pi 5" in lines
    assert "button: GPIO27 (from [board] button); light: GPIO12, pwm (profile)" in lines
    assert "audio capture: plughw:CARD=Device,DEV=0 (profile: the first USB card)" in lines


def test_harken_board_says_when_the_settings_and_the_profile_clash(tmp_path):
    proc = harken_board(tmp_path, "--root", str(BOARDS / "rpi5"), toml="[thermal]\nhot = 90.0\n")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "[thermal] hot = 90 is not below [thermal] critical = 82" in proc.stderr


def test_harken_board_rejects_an_unknown_profile(tmp_path):
    proc = harken_board(tmp_path, toml='[board]\nprofile = "rpi2"\n')
    assert proc.returncode == 2 and "[board] profile = 'rpi2' must be empty (detect the board) or one of" in proc.stderr


def test_harken_board_forced_on_a_jetsons_files_reports_cuda_not_offered(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("a machine with an NVIDIA GPU may have a CUDA onnxruntime")
    proc = harken_board(tmp_path, "--root", str(BOARDS / "x86-64"), toml='[board]\nprofile = "jetson-agx-orin"\n')
    assert proc.returncode == 0, proc.stderr
    assert "board: jetson-agx-orin (Jetson AGX Orin, jetson) — named in [board] profile" in proc.stdout
    assert "CUDAExecutionProvider is not offered by the installed onnxruntime" in proc.stdout
