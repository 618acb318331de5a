"""Signed fleet commands: keys on disk, the signer, and every check of the device's verifier."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harken.errors import ConfigError, HarkenError
from harken.fleet.protocol import REJECTIONS
from harken.fleet.signing import (
    Command,
    CommandRejected,
    Signer,
    SigningError,
    Verifier,
    generate_keypair,
    key_id,
    load_private_key,
    parse_public_key,
)

T0 = 1_700_000_000.0
NONCE = "0123456789abcdef0123456789abcdef"


class FakeClock:
    """Wall time that moves only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def private() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signer(private) -> Signer:
    return Signer(private)


def make_verifier(clock, *signers, **kw) -> Verifier:
    options = dict(max_age=60, max_bytes=65536, device_id="node1", groups=("kitchen",), clock=clock)
    options.update(kw)
    return Verifier([s.public_text for s in signers], **options)


@pytest.fixture
def verifier(clock, signer) -> Verifier:
    return make_verifier(clock, signer)


def sign_body(private: Ed25519PrivateKey, body: bytes, kid: str | None = None) -> bytes:
    """An envelope around arbitrary body bytes, correctly signed (to reach the body checks)."""
    kid = kid or Signer(private).key_id
    return envelope(key=kid, body=b64(body), sig=b64(private.sign(body)))


def envelope(**fields) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body_json(**fields) -> bytes:
    body = {"command": "ping", "args": {}, "target": "device:node1", "ts": T0, "nonce": NONCE}
    body.update(fields)
    return json.dumps(body).encode()


def rejected(verifier: Verifier, raw: bytes, code: str) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        verifier.verify(raw)
    assert info.value.code == code, str(info.value)
    return info.value


# --- round trip -------------------------------------------------------------------------


def test_round_trip(signer, verifier, clock):
    raw = signer.sign("say", {"text": "héllo"}, "device:node1", now=T0 - 5, nonce=NONCE)
    command = verifier.verify(raw)
    assert command == Command("say", {"text": "héllo"}, "device:node1", T0 - 5, NONCE, signer.key_id)
    assert verifier.remembered == 1


def test_envelope_matches_the_protocol(signer):
    raw = signer.sign("ping", {}, "group:kitchen", now=T0)
    env = json.loads(raw)
    assert set(env) == {"v", "key", "body", "sig"} and env["v"] == 1
    public_raw = base64.b64decode(signer.public_text)
    assert env["key"] == key_id(public_raw) == signer.key_id and len(env["key"]) == 16
    body = base64.b64decode(env["body"])
    signer.public_key.verify(base64.b64decode(env["sig"]), body)  # the signature covers the body bytes as sent
    fields = json.loads(body)
    assert fields["command"] == "ping" and fields["args"] == {} and fields["target"] == "group:kitchen"
    assert fields["ts"] == T0 and len(fields["nonce"]) == 32 and int(fields["nonce"], 16) >= 0


def test_each_command_gets_its_own_nonce(signer, verifier):
    first = verifier.verify(signer.sign("ping", {}, "device:node1", now=T0))
    second = verifier.verify(signer.sign("ping", {}, "device:node1", now=T0))
    assert first.nonce != second.nonce


def test_signer_refuses_what_no_device_would_accept(signer):
    with pytest.raises(SigningError, match="target must be"):
        signer.sign("ping", {}, "everyone")
    with pytest.raises(SigningError, match="nonce must be 32 hex digits"):
        signer.sign("ping", {}, "device:node1", nonce="abc")
    with pytest.raises(SigningError, match="args must be"):
        signer.sign("ping", [], "device:node1")
    with pytest.raises(SigningError, match="plain JSON"):
        signer.sign("ping", {"x": {1, 2}}, "device:node1")
    with pytest.raises(SigningError, match="finite"):
        signer.sign("ping", {}, "device:node1", now=float("nan"))


# --- each rejection, in the order they are checked -------------------------------------


def test_rejection_codes_are_the_protocols():
    assert CommandRejected("stale", "x").code == "stale"
    error = CommandRejected("replayed", "x", "ping")
    assert isinstance(error, HarkenError) and isinstance(error, ValueError) and error.command == "ping"
    with pytest.raises(ValueError, match="not a rejection code"):
        CommandRejected("nope", "x")


def test_too_large_is_checked_before_parsing(signer, clock):
    verifier = make_verifier(clock, signer, max_bytes=100)
    error = rejected(verifier, b"x" * 101, "too_large")
    assert str(error) == (
        "the command is 101 bytes and this device accepts at most 100 ([fleet] max_command_bytes): "
        "send smaller arguments, or raise the limit"
    )
    rejected(verifier, b"x" * 100, "malformed")


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"not json", "not UTF-8 JSON"),
        (b'{"v": 1, "key": "\xff"}', "not UTF-8 JSON"),
        (b"[" * 5000, "nested too deeply"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"key": "k", "body": "", "sig": "c2ln"}', "has no version"),
        (b'{"v": 2, "key": "k", "body": "", "sig": "c2ln"}', "version 2; this device speaks v1"),
        (b'{"v": true, "key": "k", "body": "", "sig": "c2ln"}', "version True"),
        (b'{"v": 1, "key": 5, "body": "", "sig": "c2ln"}', "'key' is not a string"),
        (b'{"v": 1, "key": "k", "body": ["x"], "sig": "c2ln"}', "'body' is not a string"),
        (b'{"v": 1, "key": "k", "body": "not base64!", "sig": "c2ln"}', "not base64"),
        (b'{"v": 1, "key": "k", "body": "", "sig": "c2l"}', "not base64"),
    ],
)
def test_malformed_envelopes(verifier, raw, why):
    error = rejected(verifier, raw, "malformed")
    assert why in str(error)
    assert "publish the bytes" in str(error) or "use a matching" in str(error)
    assert error.command is None


@pytest.mark.parametrize(
    "fields, missing",
    [
        ({"body": "", "sig": "c2ln"}, "key"),
        ({"key": "", "body": "", "sig": "c2ln"}, "key"),
        ({"key": "abc", "body": ""}, "sig"),
        ({"key": "abc", "body": "", "sig": None}, "sig"),
        ({"body": ""}, "key and sig"),
    ],
)
def test_unsigned(verifier, fields, missing):
    error = rejected(verifier, envelope(**fields), "unsigned")
    assert str(error) == f"the command has no {missing}: sign it with an operator key (`harken fleet` does)"


def test_unknown_key(signer, clock):
    stranger = Signer(Ed25519PrivateKey.generate())
    raw = stranger.sign("ping", {}, "device:node1", now=T0)
    error = rejected(make_verifier(clock, signer), raw, "unknown_key")
    assert stranger.key_id in str(error) and "not among the 1 key(s) in [fleet] trusted_keys" in str(error)
    assert "add the operator's operator.pub line" in str(error)
    error = rejected(make_verifier(clock), raw, "unknown_key")
    assert "this device trusts no keys: add the operator's operator.pub line to [fleet] trusted_keys" in str(error)


def test_a_body_altered_after_signing_is_a_bad_signature(signer, verifier):
    env = json.loads(signer.sign("say", {"text": "hi"}, "device:node1", now=T0))
    body = json.loads(base64.b64decode(env["body"]))
    body["args"]["text"] = "rm -rf"
    env["body"] = b64(json.dumps(body).encode())
    error = rejected(verifier, json.dumps(env).encode(), "bad_signature")
    assert str(error).startswith(f"the signature does not match the body for key {signer.key_id}: the command was altered")
    assert verifier.remembered == 0


def test_a_signature_under_another_keys_id_is_bad(signer, verifier):
    raw = sign_body(Ed25519PrivateKey.generate(), body_json(), kid=signer.key_id)  # names the trusted key, signed by another
    rejected(verifier, raw, "bad_signature")
    rejected(verifier, envelope(key=signer.key_id, body=b64(body_json()), sig=b64(b"x" * 10)), "bad_signature")


def test_another_key_is_obeyed_only_if_trusted(signer, clock):
    other = Signer(Ed25519PrivateKey.generate())
    raw = other.sign("ping", {}, "device:node1", now=T0)
    rejected(make_verifier(clock, signer), raw, "unknown_key")
    assert make_verifier(clock, signer, other).verify(raw).key_id == other.key_id


@pytest.mark.parametrize(
    "body, why",
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"not json", "not UTF-8 JSON"),
        (b"[]", "the body is not a JSON object"),
        (body_json(command=""), "command must be a non-empty string"),
        (body_json(command=3), "command must be a non-empty string"),
        (body_json(args=[]), "args must be an object"),
        (body_json(target="node1"), "target must be 'device:<id>' or 'group:<name>'"),
        (body_json(target="device:"), "target must be"),
        (body_json(ts="now"), "ts must be a finite number"),
        (body_json(ts=True), "ts must be a finite number"),
        (body_json(ts=None), "ts must be a finite number"),
        (body_json(nonce="0123"), "nonce must be 32 hex digits"),
        (body_json(nonce="g" * 32), "nonce must be 32 hex digits"),
        (body_json(nonce=NONCE + "\n"), "nonce must be 32 hex digits"),
        (body_json().replace(b'"ts": 1700000000.0', b'"ts": NaN'), "NaN is not JSON"),
        (body_json().replace(b'"ts": 1700000000.0', b'"ts": 1e400'), "ts must be a finite number"),
        (body_json().replace(b'"ts": 1700000000.0', b'"ts": 1' + b"0" * 400), "ts must be a finite number"),
    ],
)
def test_malformed_bodies(private, verifier, body, why):
    error = rejected(verifier, sign_body(private, body), "malformed")
    assert why in str(error)


def test_a_malformed_body_names_its_command_and_every_problem(private, verifier):
    error = rejected(verifier, sign_body(private, body_json(command="say", args=None, nonce="x")), "malformed")
    assert error.command == "say"
    assert str(error) == "the signed body is not a command: args must be an object; nonce must be 32 hex digits"


def test_stale_past(signer, verifier, clock):
    error = rejected(verifier, signer.sign("ping", {}, "device:node1", now=T0 - 75), "stale")
    assert str(error).startswith(
        "signed 75 s ago; commands older than 60 s are refused: check the operator's clock (and the device's)"
    )
    assert error.command == "ping"
    verifier.verify(signer.sign("ping", {}, "device:node1", now=T0 - 60))  # exactly max_age is still fresh


def test_stale_future(signer, verifier):
    error = rejected(verifier, signer.sign("ping", {}, "device:node1", now=T0 + 90.5), "stale")
    assert str(error) == (
        "signed 90.5 s in the future by this device's clock; commands more than 60 s ahead are refused: "
        "check the device's clock (and the operator's)"
    )
    verifier.verify(signer.sign("ping", {}, "device:node1", now=T0 + 59))


def test_wrong_device(signer, verifier):
    error = rejected(verifier, signer.sign("reboot", {}, "device:node2", now=T0), "wrong_target")
    assert str(error) == "signed for device:node2 and this is device:node1: publish it to the device it names"
    assert error.command == "reboot"


def test_group_targeting(signer, clock):
    verifier = make_verifier(clock, signer, groups=("kitchen", "upstairs"))
    assert verifier.verify(signer.sign("ping", {}, "group:kitchen", now=T0)).target == "group:kitchen"
    assert verifier.verify(signer.sign("ping", {}, "group:upstairs", now=T0)).target == "group:upstairs"
    error = rejected(verifier, signer.sign("ping", {}, "group:garage", now=T0), "wrong_target")
    assert str(error) == (
        "signed for group:garage and this device is in groups kitchen, upstairs: "
        "publish it to a group it is in, or add the group to [device] groups"
    )
    lone = make_verifier(clock, signer, groups=())
    assert "this device is in no groups" in str(rejected(lone, signer.sign("ping", {}, "group:kitchen", now=T0), "wrong_target"))
    rejected(lone, signer.sign("ping", {}, "group:node1", now=T0), "wrong_target")  # a group is not a device


def test_replayed(signer, verifier, clock):
    raw = signer.sign("ping", {}, "device:node1", now=T0)
    verifier.verify(raw)
    clock.now += 30
    error = rejected(verifier, raw, "replayed")
    assert str(error) == (
        f"nonce {json.loads(base64.b64decode(json.loads(raw)['body']))['nonce']} was already used by a command "
        "this device accepted: each signed command runs once; sign it again to repeat it"
    )
    assert error.command == "ping"


def test_a_replay_after_its_nonce_expired_is_stale_not_accepted(signer, verifier, clock):
    raw = signer.sign("ping", {}, "device:node1", now=T0)
    verifier.verify(raw)
    clock.now += 61
    rejected(verifier, raw, "stale")
    verifier.verify(signer.sign("ping", {}, "device:node1", now=clock.now))  # expiry ran on the way
    assert verifier.remembered == 1


def test_nonces_differing_only_in_case_are_one_nonce(signer, verifier):
    verifier.verify(signer.sign("ping", {}, "device:node1", now=T0, nonce=NONCE))
    rejected(verifier, signer.sign("ping", {}, "device:node1", now=T0, nonce=NONCE.upper()), "replayed")


def test_a_refused_command_does_not_use_up_its_nonce(signer, verifier):
    rejected(verifier, signer.sign("ping", {}, "device:node2", now=T0, nonce=NONCE), "wrong_target")
    rejected(verifier, signer.sign("ping", {}, "device:node1", now=T0 - 61, nonce=NONCE), "stale")
    assert verifier.remembered == 0
    assert verifier.verify(signer.sign("ping", {}, "device:node1", now=T0, nonce=NONCE)).nonce == NONCE


# --- the replay cache stays bounded -----------------------------------------------------


def test_nonces_are_forgotten_once_their_commands_are_stale(signer, verifier, clock):
    for _ in range(1000):  # ten commands a second, for 100 s
        verifier.verify(signer.sign("ping", {}, "device:node1", now=clock.now))
        clock.now += 0.1
    assert verifier.remembered <= 601  # what arrived within the last max_age


def test_the_cap_holds_and_never_lets_a_replay_through(signer, clock):
    verifier = make_verifier(clock, signer, max_nonces=50)
    sent = []
    for i in range(500):  # a flood, far faster than max_age can expire anything
        sent.append(signer.sign("ping", {}, "device:node1", now=T0 + i * 0.01))
        verifier.verify(sent[-1])
        assert verifier.remembered <= 50
    error = rejected(verifier, sent[0], "stale")  # forgotten, so refused rather than obeyed again
    assert "it accepted over 50 commands within 60 s, too many to remember, so it cannot rule out a replay" in str(error)
    rejected(verifier, sent[-1], "replayed")
    verifier.verify(signer.sign("ping", {}, "device:node1", now=T0 + 6))  # newer commands still go through


# --- configuration ----------------------------------------------------------------------


def test_a_bad_trusted_key_is_a_config_error_naming_it(signer, clock):
    good = signer.public_text
    with pytest.raises(ConfigError) as info:
        Verifier([good, "bm9wZQ==", "ssh-ed25519 AAAAC3Nza"], 60, 65536, "node1", clock=clock)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("[fleet] trusted_keys[1] 'bm9wZQ==': decodes to 4 bytes, and an Ed25519 public key is 32")
    assert problems[1].startswith("[fleet] trusted_keys[2] 'ssh-ed25519 AAAAC3Nza': that is an OpenSSH or PEM key")
    assert "operator.pub" in problems[0]


def test_the_same_key_listed_twice_is_one_key(signer, clock):
    verifier = Verifier([signer.public_text, " " + signer.public_text + "\n"], 60, 65536, "node1", clock=clock)
    assert verifier.key_ids == {signer.key_id}


# --- keys on disk -----------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    old_umask = os.umask(0)  # the key must come out 0600 whatever the umask
    try:
        key_path, pub_path = generate_keypair(tmp_path / "keys")
    finally:
        os.umask(old_umask)
    assert (key_path.name, pub_path.name) == ("operator.key", "operator.pub")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["operator.key", "operator.pub"]  # no temporaries left


def test_keygen_pub_file_is_what_trusted_keys_takes(tmp_path, clock):
    key_path, pub_path = generate_keypair(tmp_path)
    text = pub_path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1 and len(text.strip()) == 44
    signer = load_private_key(key_path)
    assert signer.public_text == text.strip()
    assert parse_public_key(text) == signer.public_key
    verifier = Verifier([text], 60, 65536, "node1", clock=clock)
    assert verifier.verify(signer.sign("ping", {}, "device:node1", now=T0)).key_id == signer.key_id


@pytest.mark.parametrize("existing", ["operator.key", "operator.pub"])
def test_keygen_never_overwrites(tmp_path, existing):
    (tmp_path / existing).write_text("precious\n")
    with pytest.raises(SigningError, match=f"{existing} already exists; refusing to overwrite it .*move it away first"):
        generate_keypair(tmp_path)
    assert (tmp_path / existing).read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_keygen_twice_refuses_the_second_time(tmp_path):
    key_path, _ = generate_keypair(tmp_path)
    before = key_path.read_bytes()
    with pytest.raises(SigningError, match="already exists"):
        generate_keypair(tmp_path)
    assert key_path.read_bytes() == before


def test_load_private_key_errors(tmp_path):
    with pytest.raises(SigningError, match="no operator key at .*: make one with `harken fleet keygen`"):
        load_private_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(SigningError, match="is not a PEM private key: point to operator.key"):
        load_private_key(tmp_path / "junk.key")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.key").write_bytes(ec_pem)
    with pytest.raises(SigningError, match=r"is not an Ed25519 key \(EC\), and fleet commands are signed with Ed25519"):
        load_private_key(tmp_path / "ec.key")
    locked = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    (tmp_path / "locked.key").write_bytes(locked)
    with pytest.raises(SigningError, match="is encrypted; harken needs an unencrypted key"):
        load_private_key(tmp_path / "locked.key")
    with pytest.raises(SigningError, match="cannot read the operator key"):
        load_private_key(tmp_path)


def test_parse_public_key(signer):
    assert parse_public_key(f"  {signer.public_text}\n") == signer.public_key
    with pytest.raises(SigningError, match="not base64: use the one line of operator.pub"):
        parse_public_key("not*base64")
    with pytest.raises(SigningError, match="decodes to 3 bytes"):
        parse_public_key("YWJj")
    pem = signer.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(SigningError, match="that is an OpenSSH or PEM key"):
        parse_public_key(pem.decode())


def test_key_id_wants_a_raw_key():
    assert key_id(bytes(32)) == "66687aadf862bd77"
    with pytest.raises(SigningError, match="32 bytes, not 44"):
        key_id(b"x" * 44)


def test_rejection_codes_used_are_known():
    assert {"too_large", "malformed", "unsigned", "unknown_key", "bad_signature", "stale", "replayed", "wrong_target"} <= set(REJECTIONS)
