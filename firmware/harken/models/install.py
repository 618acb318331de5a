"""Install a model into the store: nothing half-done is ever visible, nothing unproven is ever listed.

The steps, in order:

1. check the request (role, name, options) before touching anything;
2. tidy what interrupted installs left, and make a temporary directory inside
   the store (``<data>/models/.tmp/install-*``, locked while this installer lives);
3. check the free space against the bytes to be written (for a download, as
   soon as the server says how many; before any byte is written);
4. gather the files (``sources.py``): link or copy from a package, copy a local
   file or directory, or download a URL;
5. verify each file's sha256 (the catalog's, the package's RECORD, the URL's
   required ``--sha256``, a local file's optional one), re-quantize if asked,
   derive Moonshine's tokens.txt, and check each file's format;
6. probe: load the model in a throwaway process (``python -m harken.supervisor.install_probe``)
   that must prove it works within a timeout;
7. fsync, then rename the directory into ``<data>/models/<role>/<name>@<prefix>/``.

A failure at any step removes the temporary directory: the store is as it was.
A SIGKILL leaves only that directory (and a download's ``.part``, kept to be
resumed), which the next command that writes the store removes (``store.tidy``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from harken import durable
from harken.errors import ConfigError, ModelError
from harken.models import sources, store
from harken.models.catalog import sha256_file
from harken.models.formats import ENGINES, KINDS, check, moonshine_tokens, role_check
from harken.models.shrink import requantize
from harken.models.sources import Request
from harken.models.templates import chat_template

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A model's name: letters, digits, '.', '_', '-' (it is part of a directory name and of settings)."""
SHA256 = re.compile(r"[0-9a-f]{64}")
PROBE_TIMEOUT = 180.0
"""Seconds the probe process may take to load the model and prove it works."""
QUANT_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")
"""Types ``--quantize`` accepts (``harken models optimize`` offers more, with the measurements to choose by)."""


def validate(req: Request) -> None:
    """Every problem with the request at once, as one ConfigError (bad usage); nothing has been touched yet."""
    role_check(req.role)
    problems = []
    if not NAME.fullmatch(req.name):
        problems.append(f"name {req.name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if sum(x is not None for x in (req.package, req.file, req.url)) > 1:
        problems.append("give one source: --from-package, --from-file or --from-url")
    if req.sha256 is not None and not SHA256.fullmatch(req.sha256):
        problems.append("--sha256 must be 64 lowercase hex digits (sha256sum prints them)")
    if req.url is not None:
        if not req.url.startswith(("http://", "https://")):
            problems.append(f"--from-url {req.url!r}: only http:// and https:// URLs")
        if req.sha256 is None:
            problems.append("--from-url needs --sha256: a download is installed only if it is exactly the file you meant "
                            "(get the sha256 from the model's publisher, or sha256sum a copy you trust)")
        if req.role not in ("llm", "wake"):
            problems.append(f"a {req.role} model has several files: download them and install with --from-file DIR")
    if req.quantize is not None and (req.role != "llm" or req.quantize not in QUANT_TYPES):
        problems.append(f"--quantize applies to language models, with one of {', '.join(QUANT_TYPES)}")
    if req.chat_template is not None and req.role != "llm":
        problems.append("--chat-template applies to language models")
    if problems:
        raise ConfigError([f"models install: {p}" for p in problems])


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def install(data_dir: Path, req: Request, out: TextIO | None = sys.stderr, probe_timeout: float = PROBE_TIMEOUT,
            free: Callable[[Path], int] = free_bytes, extra: dict[str, Any] | None = None) -> tuple[store.Entry, bool]:
    """Install ``req`` into the store under ``data_dir``; return the entry and whether it is new
    (False: the very same model was installed already). ``extra``: more for the manifest (an optimized
    variant's recipe and scores). ModelError says what went wrong and what to do."""
    validate(req)
    template = chat_template(req.chat_template) if req.chat_template else None
    started = time.monotonic()
    with store.store_lock(data_dir) as root:
        store.tidy(data_dir)
        temp = root / store.TEMP_AREA
        temp.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="install-", dir=temp))
        fd = durable.try_lock(work.with_name(work.name + ".lock"))
    try:
        def need(n: int) -> None:
            have = free(work)
            if n > have:
                raise ModelError(f"not enough free space in {root}: installing {req.role} model {req.name} needs {n:,} bytes, "
                                 f"{have:,} are free; free some space (harken models gc removes unused models) and try again")

        gathered = sources.gather(req, work, need, out)
        _say(out, f"installing {req.role} model {req.name} from {gathered.source}")
        _say(out, "checking sha256 and file formats")
        files = _check(req, gathered, work, need, out)
        extra = dict(extra or {})
        if req.quantize:
            extra["quantized"] = {"type": req.quantize, "from_sha256": gathered.expected.get("model") or files["model"][1]}
        template = template or gathered.chat_template
        if template:
            extra["chat_template"] = template.to_dict()
        manifest = store.Manifest(
            role=req.role, name=req.name, engine=ENGINES[req.role],
            files=tuple(store.StoredFile(path.name, kind, sha, path.stat().st_size) for kind, (path, sha) in files.items()),
            licence=gathered.licence, source=gathered.source, installed_at=store.now(), extra=extra)
        final = root / req.role / manifest.id
        if _intact(final):
            _say(out, f"{req.role} model {manifest.id} is installed already")
            return store.read_entry(final), False
        durable.write_synced(work / store.MANIFEST, manifest.to_json())
        _say(out, "probing: loading the model in a separate process")
        probe(req.role, work, probe_timeout)
        for path, _ in files.values():
            durable.fsync(path)
        with store.store_lock(data_dir), store.role_lock(data_dir, req.role):
            store.swap_in(work, final)
        _say(out, f"installed {req.role} model {manifest.id} ({manifest.size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
        return store.read_entry(final), True
    finally:
        durable.remove(work)
        if fd is not None:
            work.with_name(work.name + ".lock").unlink(missing_ok=True)
            os.close(fd)


def _say(out: TextIO | None, line: str) -> None:
    if out is not None:
        print(line, file=out, flush=True)


def _intact(final: Path) -> bool:
    """Whether ``final`` is a whole installed entry (a derived tokens.txt cache in its place is replaced)."""
    try:
        item = store.read_entry(final)
        store.verify_entry(item)
    except ModelError:
        return False
    return not item.manifest.derived


def _check(req: Request, gathered: "sources.Gathered", work: Path, need: Callable[[int], None],
           out: TextIO | None) -> dict[str, tuple[Path, str]]:
    """Each file's sha256 (checked where it is known), re-quantized and completed as asked; kind → (path, sha256)."""
    files: dict[str, tuple[Path, str]] = {}
    for kind, path in gathered.files.items():
        sha = sha256_file(path)
        expected = gathered.expected.get(kind)
        if expected and sha != expected:
            raise ModelError(f"{req.role} model {req.name}: {path.name} has sha256 {sha}, not the expected {expected}; "
                             f"it is damaged or another file: nothing was installed")
        check(req.role, kind, path)
        files[kind] = (path, sha)
    if req.quantize:
        source = files["model"][0]
        need(source.stat().st_size)
        _say(out, f"re-quantizing {source.name} to {req.quantize}")
        target = work / f"{req.name}.{req.quantize}.gguf"
        try:
            requantize(source, target, req.quantize, None, work / "quantize.log")
        except ModelError as exc:
            raise ModelError(f"{exc}; nothing was installed") from None
        source.unlink()
        (work / "quantize.log").unlink(missing_ok=True)
        check(req.role, "model", target)
        files["model"] = (target, sha256_file(target))
    if req.role == "asr" and "tokens" not in files:
        tokenizer = files["tokenizer"][0]
        tokens = work / "tokens.txt"
        durable.write_synced(tokens, moonshine_tokens(tokenizer))
        files["tokens"] = (tokens, sha256_file(tokens))
    return {kind: files[kind] for kind in KINDS[req.role] if kind in files}


def probe(role: str, directory: Path, timeout: float) -> None:
    """Run ``python -m harken.supervisor.install_probe ROLE DIR`` and raise ModelError with its reason if it fails.

    The probe runs in its own session (killed whole on timeout) and dies with
    this process (PR_SET_PDEATHSIG), so a killed installer leaves no probe behind.
    """
    proc = subprocess.Popen([sys.executable, "-m", "harken.supervisor.install_probe", role, str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=die_with_parent)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ModelError(f"the {role} model did not prove itself within {timeout:g} s (probe timed out); "
                         "nothing was installed (a slow board may need --probe-timeout)") from None
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        if proc.returncode < 0:
            reason = f"killed by {signal.Signals(-proc.returncode).name}; {reason}"
        raise ModelError(f"the {role} model failed its probe: {reason}; nothing was installed")


def die_with_parent() -> None:
    """For a child's ``preexec_fn``: the kernel kills it when this process dies (the probe, the evaluation)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
