"""The fleet protocol: MQTT topics and the signed command envelope, shared by device and operator.

Topics, under ``harken/<device_id>/``:

- ``status``  retained ``online`` / ``offline`` (``offline`` is also the last will);
- ``state``   retained JSON: version, device, board, groups, models, workers, audio, uptime;
- ``metrics`` JSON snapshot every ``[mqtt] metrics_interval`` (the numbers of ``/metrics``);
- ``events``  one JSON event per message (the event log's events);
- ``cmd``     signed commands in; ``harken/group/<group>/cmd`` reaches every member;
- ``reply``   replies to signed commands whose response topic is not the operator's own (see below).

A command is published as UTF-8 JSON, the **envelope**::

    {"v": 1, "key": KEY_ID, "body": BASE64(BODY), "sig": BASE64(ED25519(BODY))}

where BODY is the exact bytes of a JSON object::

    {"command": "ping", "args": {...}, "target": "device:<id>" | "group:<name>",
     "ts": UNIX_SECONDS, "nonce": 32 HEX DIGITS}

and KEY_ID is the first 16 hex digits of sha256(raw 32-byte public key). The
signature covers the body's bytes as sent, so no canonical JSON is needed.
BASE64 is standard base64 with padding (RFC 4648 §4); ``v`` is the integer 1;
``ts`` is a finite number; the nonce is 32 lowercase hex digits (compared
without regard to case); any other target is ``malformed``; unknown extra
fields are ignored. The
operator sets the MQTT 5 ``ResponseTopic`` (and ``CorrelationData``). The device
replies there, with the same correlation data, only if the command's signature
is valid and the topic lies under ``harken/operator/<KEY_ID>/`` of the key that
signed it (see :func:`reply_topic_allowed`); otherwise on ``harken/<id>/reply``.
A message whose signature cannot be checked (too large, malformed, unsigned,
unknown key, bad signature) gets no reply at all: answering it would let anyone
make the device publish. Replies are JSON::

    {"ok": true, "device": ID, "command": NAME, "result": {...}}
    {"ok": false, "device": ID, "command": NAME or null, "code": CODE, "error": "what is wrong and what to do"}

CODE is one of REJECTIONS (the command was refused and changed nothing) or
``failed`` (it was accepted and failed).
"""

from __future__ import annotations

import socket
from typing import Any

PROTOCOL_VERSION = 1
ROOT = "harken"

REJECTIONS = (
    "too_large",  # over [fleet] max_command_bytes
    "malformed",  # not an envelope, or a body that is not a command object
    "unsigned",  # no key or signature
    "unknown_key",  # signed by a key the device does not trust
    "bad_signature",  # the signature does not match the body
    "stale",  # ts further than [fleet] max_age from the device's clock, or older than the oldest nonce it still remembers
    "replayed",  # a nonce already seen within max_age
    "wrong_target",  # signed for another device or a group it is not in
    "unknown_command",
    "bad_args",  # arguments missing or of the wrong kind
)


def topic(device_id: str, leaf: str) -> str:
    return f"{ROOT}/{device_id}/{leaf}"


def group_topic(group: str) -> str:
    return f"{ROOT}/group/{group}/cmd"


def discovery_topic(device_id: str) -> str:
    return f"homeassistant/device/harken_{device_id}/config"


HA_STATUS = "homeassistant/status"
OPERATOR = f"{ROOT}/operator"
MAX_TOPIC = 256
UNVERIFIED = ("too_large", "malformed", "unsigned", "unknown_key", "bad_signature")
"""Rejections before the signature is known to be good: answered by no reply at all."""


def operator_prefix(key_id: str) -> str:
    """Topics under which replies to commands signed by ``key_id`` may go."""
    return f"{OPERATOR}/{key_id}/"


def reply_topic_allowed(topic: str, key_id: str) -> bool:
    """Whether a device may publish a reply to a command signed by ``key_id`` on ``topic``.

    Only under that key's own prefix, with no wildcard or NUL, and not too long: a
    response topic is the sender's wish, and the device must never be made to
    publish on its own command topics or anyone else's."""
    return (topic.startswith(operator_prefix(key_id)) and len(topic) <= MAX_TOPIC
            and not any(c in topic for c in "+#\0") and len(topic) > len(operator_prefix(key_id)))


def no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """paho's on_socket_open for device and operator alike: small messages go out at once.

    Without TCP_NODELAY each command's reply waits ~40 ms for a delayed ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a Unix socket)
        pass
