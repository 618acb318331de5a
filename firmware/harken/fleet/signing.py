"""Signed fleet commands: operator keys, signing, and the device's verifier.

The wire format is defined in :mod:`harken.fleet.protocol`; this module is its
only implementation. The operator holds an Ed25519 private key (``operator.key``)
and signs commands with a :class:`Signer`; each device lists the operator's
public key (``operator.pub``) in ``[fleet] trusted_keys`` and passes every raw
command through a :class:`Verifier`, which returns a :class:`Command` or raises
:class:`CommandRejected` with one of ``protocol.REJECTIONS``.

Freshness and replays use wall time (``ts`` is Unix seconds, compared with the
device's clock), so the clock is passed in. The replay guard is only as good as
the device's clock: if it jumps back by more than ``max_age``, commands signed in
the skipped interval become fresh again while their nonces are long forgotten.
Keep devices on NTP.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import heapq
import json
import logging
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harken.errors import ConfigError, HarkenError
from harken.fleet.protocol import PROTOCOL_VERSION, REJECTIONS

_LOGGER = logging.getLogger(__name__)

KEY_FILE = "operator.key"
PUB_FILE = "operator.pub"
MAX_NONCES = 10_000
"""Default cap on remembered nonces; far above what a device accepts within max_age."""
MAX_VERDICTS = 4096
"""Signed messages whose verdict is remembered (replays of them are refused without a signature check)."""

_NONCE = re.compile(r"[0-9a-fA-F]{32}")
_KEYGEN = "make one with `harken fleet keygen`"


class SigningError(HarkenError, ValueError):
    """The operator's side failed: a key file is missing, unreadable or not an
    Ed25519 key, a public key is not in the ``operator.pub`` form, or a command
    cannot be signed as given."""


class CommandRejected(HarkenError, ValueError):
    """A command was refused and changed nothing.

    ``code`` is one of ``protocol.REJECTIONS``; ``command`` is the command's name
    when the body could be read (the reply carries it), else None; ``key_id`` is
    set once the signature has been checked and found good.
    """

    def __init__(self, code: str, message: str, command: str | None = None, key_id: str | None = None) -> None:
        if code not in REJECTIONS:
            raise ValueError(f"{code!r} is not a rejection code; use one of {', '.join(REJECTIONS)}")
        self.code = code
        self.command = command
        self.key_id = key_id
        self.temporary = False
        """True if the same bytes could be accepted later (signed in the future)."""
        """The trusted key whose valid signature the command carried; None if that is not known."""
        super().__init__(message)


    @classmethod
    def temporary_(cls, code: str, message: str, command: str | None = None, key_id: str | None = None) -> CommandRejected:
        exc = cls(code, message, command, key_id)
        exc.temporary = True
        return exc


# --- keys -------------------------------------------------------------------------------


def key_id(public_raw: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: the first 16 hex digits of its sha256."""
    if len(public_raw) != 32:
        raise SigningError(f"a raw Ed25519 public key is 32 bytes, not {len(public_raw)}")
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key in the ``operator.pub`` form: base64 of the raw 32 bytes (whitespace ignored)."""
    compact = "".join(text.split())
    hint = "use the one line of operator.pub written by `harken fleet keygen`"
    if compact.startswith(("ssh-", "-----BEGIN")):
        raise SigningError(f"that is an OpenSSH or PEM key, not the raw base64 form: {hint}")
    try:
        raw = base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise SigningError(f"not base64: {hint}") from None
    if len(raw) != 32:
        raise SigningError(f"decodes to {len(raw)} bytes, and an Ed25519 public key is 32: {hint}")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new operator key pair into ``out_dir``; return (operator.key, operator.pub).

    ``operator.key`` is an unencrypted PKCS8 PEM, created 0600 (never readable by
    others, even briefly). ``operator.pub`` is one line, the base64 of the raw
    public key: what goes into ``[fleet] trusted_keys``. Existing files are never
    replaced: a lost operator key locks the operator out of every device that trusts it.
    """
    out_dir = Path(out_dir)
    key_path, pub_path = out_dir / KEY_FILE, out_dir / PUB_FILE
    for path in (key_path, pub_path):
        if os.path.lexists(path):
            raise SigningError(_exists_message(path))
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SigningError(f"cannot create {out_dir}: {exc.strerror}: pass a directory you can write to") from None
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _create_new(key_path, pem, 0o600)
    try:
        _create_new(pub_path, (Signer(private).public_text + "\n").encode("ascii"), 0o644)
    except SigningError:
        key_path.unlink()  # ours, written a moment ago: leave no key without its public half
        raise
    return key_path, pub_path


def _exists_message(path: Path) -> str:
    return (
        f"{path} already exists; refusing to overwrite it (devices that trust the old key would stop obeying you): "
        "move it away first, or pass another directory"
    )


def _create_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole, with ``mode`` from the start, and only if it does not exist.

    The bytes go to a temporary file created O_EXCL with ``mode`` (the umask can
    only narrow it, so a 0600 key is never readable by others, not even while it
    is written) and are hard-linked into place: link() is atomic and fails rather
    than replace an existing file, so the name never holds a partial key.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise SigningError(_exists_message(path)) from None
    except OSError as exc:
        raise SigningError(f"cannot write {path}: {exc.strerror}: pass a directory on a local disk you can write to") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_private_key(path: Path) -> Signer:
    """A :class:`Signer` for the operator key in ``path`` (the PEM from :func:`generate_keypair`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SigningError(f"no operator key at {path}: {_KEYGEN}, or pass the right path") from None
    except OSError as exc:
        raise SigningError(f"cannot read the operator key {path}: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"{path} is encrypted; harken needs an unencrypted key (kept 0600): {_KEYGEN}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path} is not a PEM private key: point to operator.key, or {_KEYGEN}") from None
    if not isinstance(private, Ed25519PrivateKey):
        kind = type(private).__name__.removeprefix("_").replace("PrivateKey", "")
        raise SigningError(f"{path} is not an Ed25519 key ({kind}), and fleet commands are signed with Ed25519: {_KEYGEN}")
    if mode & 0o077:
        _LOGGER.warning("operator key %s is readable by others (mode %o): chmod 600 it", path, mode & 0o777)
    return Signer(private)


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command that passed every check of :meth:`Verifier.verify`."""

    name: str
    """The command, e.g. ``ping``; whether the device knows it is the command table's business."""
    args: dict[str, Any]
    """Its arguments, as signed."""
    target: str
    """``device:<id>`` or ``group:<name>``, as signed."""
    ts: float
    """When it was signed (Unix seconds, the operator's clock)."""
    nonce: str
    """32 lowercase hex digits, unique per command."""
    key_id: str
    """The id of the operator key that signed it."""


def _body_problems(body: Any) -> list[str]:
    """What is wrong with a decoded body (empty if it is a command object)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = []
    if not isinstance(body.get("command"), str) or not body["command"]:
        problems.append("command must be a non-empty string")
    if not isinstance(body.get("args"), dict):
        problems.append("args must be an object")
    target = body.get("target")
    kind, _, name = target.partition(":") if isinstance(target, str) else ("", "", "")
    if kind not in ("device", "group") or not name:
        problems.append("target must be 'device:<id>' or 'group:<name>'")
    ts = body.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not _finite(ts):
        problems.append("ts must be a finite number (Unix seconds)")
    if not isinstance(body.get("nonce"), str) or not _NONCE.fullmatch(body["nonce"]):
        problems.append("nonce must be 32 hex digits")
    return problems


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Signer:
    """Signs commands with an operator's Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.public_text = _b64(_public_raw(self.public_key))  # what operator.pub holds
        self.key_id = key_id(_public_raw(self.public_key))

    def sign(self, command: str, args: dict, target: str, now: float | None = None, nonce: str | None = None) -> bytes:
        """The envelope (UTF-8 JSON) of a command, signed now (or at ``now``) with a fresh nonce."""
        body = {
            "command": command,
            "args": args,
            "target": target,
            "ts": time.time() if now is None else now,
            "nonce": secrets.token_hex(16) if nonce is None else nonce,
        }
        problems = _body_problems(body)
        if problems:
            raise SigningError(f"cannot sign {command!r}: {'; '.join(problems)}")
        try:
            body_bytes = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SigningError(f"cannot sign {command!r}: args must be plain JSON ({exc})") from None
        envelope = {"v": PROTOCOL_VERSION, "key": self.key_id, "body": _b64(body_bytes), "sig": _b64(self._private.sign(body_bytes))}
        return json.dumps(envelope, separators=(",", ":")).encode("ascii")


# --- the device's side ------------------------------------------------------------------


def _replayed(command: Command) -> str:
    return (f"nonce {command.nonce} was already used by a command this device accepted: "
            "each signed command runs once; sign it again to repeat it")


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _loads(data: bytes | str) -> Any:
    """JSON without NaN/Infinity; raises ValueError for bad JSON, too-deep nesting included."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_envelope(raw: bytes) -> tuple[str, bytes, bytes]:
    """(key id, body bytes, signature) of an envelope; CommandRejected if it is not one."""
    try:
        envelope = _loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise CommandRejected("malformed", f"not a command envelope (not UTF-8 JSON: {exc}): publish the bytes `harken fleet` signs, unchanged") from None
    if not isinstance(envelope, dict):
        raise CommandRejected("malformed", "not a command envelope (not a JSON object): publish the bytes `harken fleet` signs, unchanged")
    version = envelope.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        said = "no version" if version is None else f"version {version!r}"
        raise CommandRejected("malformed", f"the envelope has {said}; this device speaks v{PROTOCOL_VERSION}: use a matching `harken fleet`")
    fields = {}
    for name in ("key", "body", "sig"):
        value = envelope.get(name)
        if value is not None and not isinstance(value, str):
            raise CommandRejected("malformed", f"the envelope's {name!r} is not a string: publish the bytes `harken fleet` signs, unchanged")
        fields[name] = value or ""
    try:
        body = base64.b64decode(fields["body"], validate=True)
        sig = base64.b64decode(fields["sig"], validate=True)
    except binascii.Error:
        raise CommandRejected("malformed", "the envelope's body or sig is not base64: publish the bytes `harken fleet` signs, unchanged") from None
    if not fields["key"] or not sig:
        missing = " and ".join(name for name in ("key", "sig") if not fields[name])
        raise CommandRejected("unsigned", f"the command has no {missing}: sign it with an operator key (`harken fleet` does)")
    return fields["key"], body, sig


class _NonceCache:
    """Nonces of accepted commands, by their ts, bounded in time and in number.

    A nonce only has to be remembered while its command's ts is fresh (within
    max_age of now): after that a replay is refused as stale anyway, so expired
    entries are dropped. The cap bounds memory if a trusted operator sends more
    than ``capacity`` commands within max_age. Dropping the oldest entry (lowest
    ts) would then let that command be replayed, so the cache raises ``floor`` to
    the dropped ts instead and the verifier refuses every command signed at or
    before it: it can no longer tell whether it has seen them. Memory stays
    bounded and replays stay impossible; the only cost is refusing late
    commands during such a flood, which the operator sees and can re-sign.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.floor = -math.inf
        self._ts: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._ts)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._ts

    def expire(self, oldest_fresh: float) -> None:
        """Forget nonces whose ts is before ``oldest_fresh`` (their commands are stale)."""
        while self._heap and self._heap[0][0] < oldest_fresh:
            del self._ts[heapq.heappop(self._heap)[1]]

    def add(self, nonce: str, ts: float) -> None:
        while len(self._ts) >= self.capacity:
            dropped_ts, dropped = heapq.heappop(self._heap)
            del self._ts[dropped]
            self.floor = max(self.floor, dropped_ts)
        self._ts[nonce] = ts
        heapq.heappush(self._heap, (ts, nonce))


class Verifier:
    """Checks raw commands for one device: size, envelope, key, signature, body,
    freshness, target and replay, in that order (the order the codes are reported in).

    Not thread-safe: call it from the one loop that owns the fleet link.
    """

    def __init__(
        self,
        trusted_keys: Iterable[str],
        max_age: float,
        max_bytes: int,
        device_id: str,
        groups: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        max_nonces: int = MAX_NONCES,
        floor: float = -math.inf,
    ) -> None:
        problems = []
        self._keys: dict[str, Ed25519PublicKey] = {}
        for index, text in enumerate(trusted_keys):
            try:
                public = parse_public_key(text)
            except SigningError as exc:
                shown = text if len(text) <= 60 else text[:57] + "..."
                problems.append(f"[fleet] trusted_keys[{index}] {shown!r}: {exc}")
                continue
            self._keys[key_id(_public_raw(public))] = public  # the same key listed twice is one key
        if not max_age > 0:
            problems.append(f"[fleet] max_age must be positive, not {max_age}")
        if not max_bytes > 0:
            problems.append(f"[fleet] max_command_bytes must be positive, not {max_bytes}")
        if not device_id:
            problems.append("[device] id is empty: set it (or leave it out to use the hostname)")
        if max_nonces < 1:
            problems.append(f"max_nonces must be at least 1, not {max_nonces}")
        if problems:
            raise ConfigError(problems)
        self.max_age = float(max_age)
        self.max_bytes = max_bytes
        self.device_id = device_id
        self.groups = frozenset(groups)
        self._clock = clock
        self._nonces = _NonceCache(max_nonces)
        self._verdicts: collections.OrderedDict[bytes, Command | tuple[str, str, str | None, str | None]] = (
            collections.OrderedDict())
        self._start_floor = floor if math.isfinite(floor) else -math.inf
        self.highest = self._start_floor
        """The newest ts of any accepted command (or the floor it started with): kept across restarts
        by the caller and passed back as ``floor``, so that no command accepted before can be replayed."""

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the trusted keys."""
        return frozenset(self._keys)

    @property
    def remembered(self) -> int:
        """How many nonces are held for the replay check (at most ``max_nonces``)."""
        return len(self._nonces)

    def verify(self, raw: bytes) -> Command:
        """The command in ``raw``, or CommandRejected. Its nonce is remembered only if it is accepted.

        A signed message seen before gets the same verdict again from a small cache,
        without another signature check: one captured command replayed in a loop costs
        a hash, not an Ed25519 verification (accepted once, it is "replayed" after)."""
        if len(raw) > self.max_bytes:
            raise CommandRejected(
                "too_large",
                f"the command is {len(raw)} bytes and this device accepts at most {self.max_bytes} "
                "([fleet] max_command_bytes): send smaller arguments, or raise the limit",
            )
        kid, body_bytes, sig = _parse_envelope(raw)
        public = self._keys.get(kid)
        if public is None:
            raise CommandRejected("unknown_key", self._unknown_key_message(kid))
        seen = hashlib.sha256(b"%s\0%s\0%s" % (kid.encode(), sig, body_bytes)).digest()
        cached = self._verdicts.get(seen)
        if cached is not None:
            self._verdicts.move_to_end(seen)
            if isinstance(cached, Command):  # accepted once: refused now, as stale if it is old by now
                self._check_fresh(cached, self._clock())
                raise CommandRejected("replayed", _replayed(cached), cached.name, cached.key_id)
            raise CommandRejected(*cached)
        try:
            command = self._verify_signed(kid, public, body_bytes, sig)
        except CommandRejected as exc:
            if not exc.temporary:
                self._remember(seen, (exc.code, str(exc), exc.command, exc.key_id))
            raise
        self._remember(seen, command)
        return command

    def _remember(self, seen: bytes, verdict: Command | tuple[str, str, str | None, str | None]) -> None:
        self._verdicts[seen] = verdict
        if len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)

    def _verify_signed(self, kid: str, public: Ed25519PublicKey, body_bytes: bytes, sig: bytes) -> Command:
        try:
            public.verify(sig, body_bytes)
        except InvalidSignature:
            raise CommandRejected(
                "bad_signature",
                f"the signature does not match the body for key {kid}: the command was altered after signing "
                "(publish the signed bytes unchanged), or signed with another key than the one it names",
            ) from None
        body = self._parse_body(body_bytes, kid)
        command = Command(body["command"], body["args"], body["target"], float(body["ts"]), body["nonce"].lower(), kid)
        now = self._clock()
        self._nonces.expire(now - self.max_age)
        self._check_fresh(command, now)
        self._check_target(command)
        if command.nonce in self._nonces:
            raise CommandRejected("replayed", _replayed(command), command.name, kid)
        self._nonces.add(command.nonce, command.ts)
        self.highest = max(self.highest, command.ts)
        return command

    def _unknown_key_message(self, kid: str) -> str:
        if not self._keys:
            return f"signed with key {kid}, and this device trusts no keys: add the operator's operator.pub line to [fleet] trusted_keys"
        return (
            f"signed with key {kid}, which is not among the {len(self._keys)} key(s) in [fleet] trusted_keys: "
            "add the operator's operator.pub line there, or sign with a trusted key"
        )

    @staticmethod
    def _parse_body(body_bytes: bytes, kid: str) -> dict[str, Any]:
        try:
            body = _loads(body_bytes.decode("utf-8"))
        except ValueError as exc:
            raise CommandRejected("malformed", f"the signed body is not UTF-8 JSON ({exc}): sign a command object", None, kid) from None
        problems = _body_problems(body)
        if problems:
            name = body.get("command") if isinstance(body, dict) and isinstance(body.get("command"), str) else None
            raise CommandRejected("malformed", f"the signed body is not a command: {'; '.join(problems)}", name, kid)
        return body

    def _too_old(self, age: float) -> str:
        return (f"signed {_seconds(age)} s ago; commands older than {_seconds(self.max_age)} s are refused: "
                "check the operator's clock (and the device's), and send commands right after signing them")

    def _check_fresh(self, command: Command, now: float) -> None:
        age = now - command.ts
        if age > self.max_age:
            raise CommandRejected("stale", self._too_old(age), command.name, command.key_id)
        if -age > self.max_age:
            raise CommandRejected.temporary_(
                "stale",
                f"signed {_seconds(-age)} s in the future by this device's clock; commands more than "
                f"{_seconds(self.max_age)} s ahead are refused: check the device's clock (and the operator's)",
                command.name, command.key_id,
            )
        if command.ts <= self._start_floor:
            raise CommandRejected(
                "stale",
                "signed no later than a command this device accepted before it last started, so it cannot rule out "
                "a replay: sign it again",
                command.name, command.key_id,
            )
        if command.ts <= self._nonces.floor:
            raise CommandRejected(
                "stale",
                f"signed before the oldest command this device still remembers: it accepted over {self._nonces.capacity} "
                f"commands within {_seconds(self.max_age)} s, too many to remember, so it cannot rule out a replay: "
                "sign it again, and send fewer commands at once",
                command.name, command.key_id,
            )

    def _check_target(self, command: Command) -> None:
        kind, _, name = command.target.partition(":")
        if kind == "device" and name != self.device_id:
            raise CommandRejected(
                "wrong_target",
                f"signed for {command.target} and this is device:{self.device_id}: publish it to the device it names",
                command.name, command.key_id,
            )
        if kind == "group" and name not in self.groups:
            member = f"groups {', '.join(sorted(self.groups))}" if self.groups else "no groups"
            raise CommandRejected(
                "wrong_target",
                f"signed for {command.target} and this device is in {member}: "
                "publish it to a group it is in, or add the group to [device] groups",
                command.name, command.key_id,
            )
