"""The operator's side of the fleet: see devices, send them signed commands, collect replies.

Blocking code for a command-line tool: paho's network thread fills thread-safe
structures, the caller waits on them with deadlines. Needs only paho-mqtt and
cryptography (no engines).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from harken.brokerurl import broker_address
from harken.errors import HarkenError
from harken.fleet import protocol

if TYPE_CHECKING:  # only a type here; cryptography is loaded where a Signer is made (commands/fleet.py)
    from harken.fleet.signing import Signer


class FleetError(HarkenError, RuntimeError):
    pass


@dataclass
class Device:
    id: str
    online: bool | None = None
    state: dict[str, Any] = field(default_factory=dict)
    last_seen: float | None = None
    """Wall time of the newest message from it (its state's timestamp when only retained messages were seen)."""


class FleetClient:
    def __init__(self, url: str, username: str = "", password: str = "", ca_file: str = "", timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        try:
            self._host, self._port, tls = broker_address(url)
        except ValueError as exc:
            raise FleetError(f"--broker {exc}") from None
        self.timeout = timeout
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"harken-operator-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5)
        self.client.suppress_exceptions = True
        if username:
            self.client.username_pw_set(username, password or None)
        if tls:
            self.client.tls_set(ca_certs=ca_file or None)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.devices: dict[str, Device] = {}
        self.replies: dict[bytes, dict[str, dict[str, Any]]] = {}
        """Correlation data of a send() under way → {device: its reply}."""
        self.session = secrets.token_hex(8)
        """Replies come back on harken/operator/<key id>/<session>/reply: under the signing key's prefix,
        the only place a device will publish a reply to."""
        self._connected = threading.Event()
        self._refused: str | None = None
        self._last_message = time.monotonic()
        self.on_update: Callable[[Device], None] | None = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_socket_open = protocol.no_delay

    # -- connection ----------------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            self.client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise FleetError(f"cannot reach the broker at {self._host}:{self._port}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise FleetError(f"the broker at {self._host}:{self._port} did not answer within {self.timeout:g} s")
        if self._refused:
            self.close()
            raise FleetError(f"the broker refused the connection: {self._refused} (check --username/--password)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> FleetClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        else:
            # QoS 0: a broker queues only so many QoS 1 messages per client (1,000 by default)
            # and drops the rest, and a fleet's retained states arrive all at once.
            client.subscribe([(protocol.topic("+", "status"), 0), (protocol.topic("+", "state"), 0),
                              (self._reply_topic("+"), 0)])
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self._handle(msg)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):  # one bad message must not end the tool
            pass

    def _handle(self, msg: Any) -> None:
        parts = msg.topic.split("/")
        with self._changed:
            self._last_message = time.monotonic()
            if parts[:2] == [protocol.ROOT, "operator"] and parts[3:] == [self.session, "reply"]:
                correlation = getattr(msg.properties, "CorrelationData", None)
                waiting = self.replies.get(bytes(correlation)) if correlation is not None else None
                if waiting is not None:
                    reply = json.loads(msg.payload)
                    waiting[str(reply.get("device", ""))] = reply
            elif len(parts) == 3 and parts[0] == protocol.ROOT and parts[2] in ("status", "state") and parts[1] not in ("group", "operator"):
                device = self.devices.setdefault(parts[1], Device(parts[1]))
                if parts[2] == "status":
                    device.online = msg.payload == b"online"
                else:
                    device.state = json.loads(msg.payload)
                seen = time.time() if not msg.retain else device.state.get("ts")
                if seen is not None:
                    device.last_seen = max(device.last_seen or 0.0, float(seen))
                if self.on_update is not None:
                    self.on_update(device)
            self._changed.notify_all()

    def _reply_topic(self, key_id: str) -> str:
        return f"{protocol.operator_prefix(key_id)}{self.session}/reply"

    # -- listing -------------------------------------------------------------------------------------
    def list_devices(self, settle: float = 0.3) -> dict[str, Device]:
        """Every device the broker holds a retained status or state for; waits until they stop arriving."""
        deadline = time.monotonic() + self.timeout
        with self._changed:
            while time.monotonic() < deadline:
                quiet = time.monotonic() - self._last_message
                if quiet >= settle:
                    break
                self._changed.wait(settle - quiet)
            return {k: Device(v.id, v.online, dict(v.state), v.last_seen) for k, v in sorted(self.devices.items())}

    # -- commands ------------------------------------------------------------------------------------
    def send(self, signer: Signer, command: str, args: dict[str, Any], devices: list[str] | None = None,
             group: str | None = None, expect: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, Any]]:
        """Send one signed command to devices (each its own) or to a group; return replies by device.

        Waits until every addressed device replied (a group: ``expect`` replies, if
        known), or ``timeout`` seconds."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        correlation = secrets.token_bytes(8)
        with self._lock:
            self.replies[correlation] = {}
        targets = [(protocol.topic(d, "cmd"), f"device:{d}") for d in devices or []]
        if group is not None:
            targets.append((protocol.group_topic(group), f"group:{group}"))
        for topic, target in targets:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self._reply_topic(signer.key_id)
            props.CorrelationData = correlation
            self.client.publish(topic, signer.sign(command, args, target), qos=1, properties=props)
        wanted = len(devices or []) if group is None else expect
        deadline = time.monotonic() + self.timeout
        with self._changed:
            try:
                while time.monotonic() < deadline:
                    got = self.replies[correlation]
                    if progress is not None:
                        progress(len(got), wanted or 0)
                    if wanted is not None and len(got) >= wanted:
                        break
                    self._changed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                return dict(self.replies[correlation])
            finally:
                del self.replies[correlation]
