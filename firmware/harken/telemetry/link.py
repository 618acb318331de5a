"""The device's MQTT link to its fleet (paho-mqtt 2.x, MQTT 5).

paho runs its network thread; every callback only hands its arguments to the
asyncio loop with ``call_soon_threadsafe``, where all the link's state lives.
Topics and the command envelope are in :mod:`harken.fleet.protocol`.

- On connect: retained ``status`` = ``online`` (``offline`` is the last will,
  and is also published on a clean shutdown, which sends no will), retained
  ``state``, the subscriptions (``cmd``, each group's ``cmd``, Home Assistant's
  status), Home Assistant discovery, then the events buffered while away.
- Events go out one message each (QoS 1). While the broker is away they wait in
  a bounded buffer that drops the oldest (and counts them).
- Commands are verified (signature, age, nonce, target) and then handled by
  the agent; every command gets a reply on its MQTT 5 response topic with its
  correlation data, and a refused command changes nothing.
- paho reconnects by itself with a delay that doubles from 1 s to
  ``[mqtt] reconnect_max``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from typing import Any, Awaitable, Callable, Protocol

from harken.config import Settings
from harken.errors import ConfigError, HarkenError
from harken.fleet import protocol
from harken.fleet.signing import Command, CommandRejected, Verifier

_LOGGER = logging.getLogger(__name__)


class CommandFailed(HarkenError, RuntimeError):
    """A command that was accepted but could not be carried out (code ``failed``) or had bad arguments."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


class Agent(Protocol):
    """What the link needs from the device (the real service, or the fleet simulator's stub)."""

    def state(self) -> dict[str, Any]: ...

    def metrics(self) -> dict[str, Any]: ...

    def handle(self, command: Command) -> Awaitable[dict[str, Any]]: ...

    def discovery(self) -> dict[str, Any] | None: ...


class DeviceLink:
    def __init__(self, settings: Settings, device_id: str, agent: Agent,
                 on_change: Callable[[bool], None] | None = None, on_command: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self.device_id = device_id
        self.agent = agent
        self.on_change = on_change
        """Called on the loop with True/False when the link comes up or goes down."""
        self.on_command = on_command
        """Called with (command name or '?', outcome code) for every command (metrics)."""
        fleet = settings.fleet
        self.verifier = Verifier(fleet.trusted_keys, fleet.max_age, fleet.max_command_bytes, device_id, settings.device.groups)
        self.connected = False
        self.dropped = 0
        self.buffer: collections.deque[bytes] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connects = 0

    def topic(self, leaf: str) -> str:
        return protocol.topic(self.device_id, leaf)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        m = self.settings.mqtt
        try:
            host, port, tls = protocol.broker_address(m.url)
        except ValueError as exc:
            raise ConfigError([f"[mqtt] url = {exc}"]) from None
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"harken-{self.device_id}", protocol=mqtt.MQTTv5)
        client.suppress_exceptions = True  # a bug in a callback must not kill paho's thread
        client.enable_logger(logging.getLogger("harken.mqtt"))
        client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        if m.username:
            client.username_pw_set(m.username, m.password or None)
        if tls:
            client.tls_set(ca_certs=m.ca_file or None)
        client.reconnect_delay_set(1, int(m.reconnect_max))
        loop = self._loop
        client.on_connect = lambda c, u, flags, rc, props: loop.call_soon_threadsafe(self._connected, rc.is_failure, str(rc))
        client.on_disconnect = lambda c, u, flags, rc, props: loop.call_soon_threadsafe(self._disconnected, str(rc))
        client.on_connect_fail = lambda c, u: loop.call_soon_threadsafe(self._disconnected, "cannot reach the broker")
        client.on_message = lambda c, u, msg: loop.call_soon_threadsafe(self._message, msg.topic, msg.payload, msg.properties)
        client.on_socket_open = protocol.no_delay
        client.connect_async(host, port, keepalive=m.keepalive, clean_start=True)
        client.loop_start()
        self._client = client
        self._spawn(self._publish_metrics(), "mqtt-metrics")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        client = self._client
        if client is None:
            return
        self._client = None
        if self.connected:
            info = client.publish(self.topic("status"), "offline", qos=1, retain=True)
            await asyncio.get_running_loop().run_in_executor(None, _wait_published, info, 2.0)
            self._set_connected(False)  # a leaving device, not a lost broker
            client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)
        self._set_connected(False)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connection (on the loop) ----------------------------------------------------------------
    def _connected(self, failed: bool, reason: str) -> None:
        if failed:
            _LOGGER.warning("the broker refused the connection: %s (check [mqtt] username/password)", reason)
            return
        client = self._client
        if client is None:
            return
        self.connects += 1
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        self.publish_state()
        subs = [(self.topic("cmd"), 1), (protocol.HA_STATUS, 1)] + [(protocol.group_topic(g), 1) for g in self.settings.device.groups]
        if self.settings.mqtt.ha_commands:
            subs.append((self.topic("ha/+"), 1))
        client.subscribe(subs)
        self.announce()
        while self.buffer:
            client.publish(self.topic("events"), self.buffer.popleft(), qos=1)
        self._set_connected(True)

    def _disconnected(self, reason: str) -> None:
        if self.connected:
            _LOGGER.warning("lost the broker (%s); reconnecting with backoff", reason)
        self._set_connected(False)

    def _set_connected(self, up: bool) -> None:
        if up != self.connected:
            self.connected = up
            if self.on_change is not None:
                self.on_change(up)

    # -- outgoing ----------------------------------------------------------------------------------
    def publish_event(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, default=str).encode()
        if self.connected and self._client is not None:
            self._client.publish(self.topic("events"), payload, qos=1)
            return
        limit = self.settings.mqtt.buffer_events
        if limit == 0:
            self.dropped += 1
            return
        if len(self.buffer) >= limit:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(payload)

    def publish_state(self) -> None:
        if self._client is not None:
            self._client.publish(self.topic("state"), json.dumps(self.agent.state(), default=str), qos=1, retain=True)

    def announce(self) -> None:
        """Home Assistant discovery (again, when Home Assistant says it came online)."""
        payload = self.agent.discovery()
        if payload is not None and self._client is not None:
            self._client.publish(protocol.discovery_topic(self.device_id), json.dumps(payload), qos=1, retain=True)

    async def _publish_metrics(self) -> None:
        # A random phase: devices that connect together (a fleet booting, a broker restarting)
        # must not report in lockstep.
        await asyncio.sleep(random.uniform(0, self.settings.mqtt.metrics_interval))
        while True:
            await asyncio.sleep(self.settings.mqtt.metrics_interval)
            if self.connected and self._client is not None:
                self._client.publish(self.topic("metrics"), json.dumps({"ts": round(time.time(), 3), **self.agent.metrics()}), qos=0)
                self.publish_state()  # its timestamp is the fleet's "last seen"

    # -- incoming ------------------------------------------------------------------------------------
    def _message(self, topic: str, payload: bytes, props: Any) -> None:
        if topic == protocol.HA_STATUS:
            if payload.strip() == b"online":
                self.announce()
            return
        if topic.startswith(self.topic("ha/")):
            self._spawn(self._ha_command(topic.rsplit("/", 1)[1], payload), "mqtt-ha-command")
            return
        self._spawn(self._command(payload, getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)),
                    "mqtt-command")

    async def _command(self, payload: bytes, response_topic: str | None, correlation: bytes | None) -> None:
        name: str | None = None
        try:
            command = self.verifier.verify(payload)
            name = command.name
            result = await self.agent.handle(command)
            reply: dict[str, Any] = {"ok": True, "device": self.device_id, "command": name, "result": result}
            outcome = "ok"
        except CommandRejected as exc:
            name = exc.command
            reply, outcome = {"ok": False, "device": self.device_id, "command": name, "code": exc.code, "error": str(exc)}, exc.code
        except CommandFailed as exc:
            reply, outcome = {"ok": False, "device": self.device_id, "command": name, "code": exc.code, "error": str(exc)}, exc.code
        except Exception as exc:  # task boundary: a bug in a handler is a failed command, not a dead link
            _LOGGER.exception("command %s failed", name)
            reply, outcome = {"ok": False, "device": self.device_id, "command": name, "code": "failed",
                              "error": f"{type(exc).__name__}: {exc}"}, "failed"
        if self.on_command is not None:
            self.on_command(name or "?", outcome)
        self._reply(reply, response_topic, correlation)

    async def _ha_command(self, name: str, payload: bytes) -> None:
        """Home Assistant's button and text box: unsigned, so only these two harmless actions."""
        if not self.settings.mqtt.ha_commands:
            return
        args: dict[str, Any]
        if name == "restart":
            command, args = "restart_worker", {"role": "all"}
        elif name == "say":
            command, args = "say", {"text": payload.decode("utf-8", "replace")[:255]}
        else:
            _LOGGER.warning("ignoring unknown Home Assistant command topic ha/%s", name)
            return
        outcome = "ok"
        try:
            await self.agent.handle(Command(command, args, f"device:{self.device_id}", time.time(), "", "homeassistant"))
        except HarkenError as exc:
            outcome = getattr(exc, "code", "failed")
            _LOGGER.warning("Home Assistant's %s failed: %s", name, exc)
        if self.on_command is not None:
            self.on_command(f"ha_{name}", outcome)

    def _reply(self, reply: dict[str, Any], response_topic: str | None, correlation: bytes | None) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self._client is None:
            return
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        self._client.publish(response_topic or self.topic("reply"), json.dumps(reply, default=str), qos=1, properties=props)


def _wait_published(info: Any, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):  # not queued (connection already gone)
        pass
