import base64
import json
import subprocess

from harken.models import catalog, formats, store
from support.harness import harken_cmd


def test_every_default_model_is_installed_and_verifies():
    for item in catalog.CATALOG:
        paths = catalog.verified_paths(item)
        assert all(p.is_file() for p in paths.values())


def test_moonshine_tokens_are_derived_once_and_repaired_when_damaged(tmp_path):
    item = catalog.entry("asr", "moonshine-tiny-en")
    tokenizer = item.paths()["assets/tiny-en/tokenizer.bin"]
    tokens = formats.decode_moonshine_tokenizer(tokenizer.read_bytes())
    assert len(tokens) == 32768
    assert tokens[:3] == [b"<unk>", b"<s>", b"</s>"]
    path = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    lines = path.read_text().splitlines()
    assert len(lines) == 32768 and lines[1000].endswith(" 1000")
    assert base64.b64decode(lines[1].split()[0]) == b"<s>"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["source"] == "moonshine-voice==0.1.0"
    path.write_text("damaged")
    again = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    assert len(again.read_text().splitlines()) == 32768
    assert not [p for p in again.parent.parent.iterdir() if p.name.startswith(".tmp-")]


def test_models_list_shows_role_name_size_sha_licence_path():
    proc = subprocess.run(harken_cmd("models", "list", "--json"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["role"], r["name"]): r for r in json.loads(proc.stdout)}
    assert {"wake", "vad", "asr", "llm", "tts", "turn"} == {role for role, _ in rows}
    turn = rows[("turn", "smart-turn-v3.2")]
    assert turn["licence"] == "BSD-2-Clause" and turn["size"] == 8679182 and turn["status"] == "installed"
    assert "/share/harken/model-files/pipecat-ai-1.14.0/" in turn["path"]
    llm = rows[("llm", "smollm2-135m-instruct")]
    assert llm["licence"] == "Apache-2.0" and llm["size"] == 98362432 and llm["sha256"].startswith("b179c952")
    assert llm["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and llm["status"] == "installed"
    text = subprocess.run(harken_cmd("models", "list"), capture_output=True, text=True, timeout=60).stdout
    assert "hey_jarvis*" in text and "CC-BY-NC-SA-4.0" in text


def test_a_corrupt_model_fails_a_one_shot_command_with_the_fix_and_no_worker_left(tmp_path, data_dir):
    """A model file altered on disk (same size, other bytes) never reaches an engine.

    (`harken run` keeps serving without that role instead: see test_faults.py.)"""
    from support.harness import DEMO, corrupt_model_env, worker_processes

    env = corrupt_model_env(tmp_path, "vad", "silero-vad", "data/silero_vad.onnx")
    proc = subprocess.run(harken_cmd("transcribe", "--data-dir", str(data_dir), str(DEMO)),
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert "wake worker: failed to load" in proc.stderr and "is corrupt" in proc.stderr
    assert "pip install --no-deps --force-reinstall 'silero-vad==6.2.3'" in proc.stderr
    assert worker_processes(str(tmp_path)) == []  # the workers that did load were stopped
