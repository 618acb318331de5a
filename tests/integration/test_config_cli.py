import subprocess
from pathlib import Path

from support.harness import harken_cmd


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harken.toml"
    path.write_text(text)
    return path


def test_cli_exits_2_with_every_problem_and_starts_nothing(tmp_path):
    path = write(tmp_path, '[wake]\nmodel = "nope"\n[listen]\ntimeout = -1\n')
    proc = subprocess.run(harken_cmd("run", "--config", str(path), "--input", "x.wav"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "2 problem(s)" in proc.stderr
    assert "[wake] model = 'nope'" in proc.stderr and "[listen] timeout = -1" in proc.stderr
