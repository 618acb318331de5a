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
  the agent. A command whose signature checks out gets a reply, with its
  correlation data, on its MQTT 5 response topic if that lies under the signing
  key's ``harken/operator/<key id>/`` prefix, else on ``harken/<id>/reply``;
  anything else gets no reply at all, only a count. A refused command changes
  nothing. The newest accepted command's time is kept on disk, so that nothing
  accepted before a restart can be replayed after it.
- The broker is told the largest packet the device takes (MQTT 5 Maximum
  Packet Size), so oversized publishes never reach it; subscriptions use No
  Local, so the device never hears its own messages.
- Unless ``[privacy] share_transcripts``, events leave without what was heard
  or said (:func:`shareable`).
- paho reconnects by itself with a delay that doubles from 1 s to
  ``[mqtt] reconnect_max``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import random
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Protocol

from harken.brokerurl import broker_address
from harken.config import Settings
from harken.durable import write_atomic
from harken.errors import ConfigError, HarkenError
from harken.events import EventType
from harken.fleet import protocol
from harken.fleet.signing import Command, CommandRejected, Verifier

_LOGGER = logging.getLogger(__name__)


class CommandFailed(HarkenError, RuntimeError):
    """A command that was accepted but could not be carried out (code ``failed``) or had bad arguments."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


class Followup:
    """A command's result, and something to start once its reply has gone out (e.g. switch to a new link).

    ``then`` is called on the loop and must only start work that it owns: the link
    that calls it may be the one that work closes."""

    def __init__(self, result: dict[str, Any], then: Callable[[], None]) -> None:
        self.result = result
        self.then = then


MAX_WAITING = 256
"""Incoming messages that may wait for the loop; more are shed (counted as command "?", outcome "shed")."""
REFUSAL_REPLIES_PER_S = 10.0
REFUSAL_REPLIES_BURST = 50
"""Replies to refused signed commands (one captured command replayed in a loop) beyond this rate are not sent."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; the clock is injectable."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.at = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


PACKET_MARGIN = 4096
"""Room for the topic and properties on top of [fleet] max_command_bytes in the Maximum Packet Size."""
PRIVATE = {EventType.TRANSCRIPT: ("text", "raw"), EventType.REPLY: ("text",), EventType.UTTERANCE: ("transcript", "reply"),
           EventType.TIMER: ("name",)}
"""Fields of events that hold what was heard or said."""


def shareable(event: dict[str, Any], share_transcripts: bool) -> dict[str, Any] | None:
    """The event as it may leave the device; None if nothing of it may (a partial transcript)."""
    if share_transcripts or event.get("type") not in PRIVATE:
        return event
    if event["type"] == EventType.TRANSCRIPT and not event.get("final"):
        return None
    return {k: v for k, v in event.items() if k not in PRIVATE[event["type"]]}


class Agent(Protocol):
    """What the link needs from the device (the real service, or the fleet simulator's stub)."""

    def state(self) -> dict[str, Any]: ...

    def metrics(self) -> dict[str, Any]: ...

    def handle(self, command: Command) -> Awaitable[Any]: ...
    """The command's result (a dict, or a :class:`Followup`); CommandFailed if it cannot be done."""

    def discovery(self) -> dict[str, Any] | None: ...

    def home_assistant(self, name: str, payload: bytes) -> str: ...
    """Home Assistant's unsigned ``ha/<name>``; returns the outcome word for the metrics."""


class DeviceLink:
    def __init__(self, settings: Settings, device_id: str, agent: Agent,
                 on_change: Callable[[bool], None] | None = None, on_command: Callable[[str, str], None] | None = None,
                 floor_path: Path | None = None) -> None:
        self.settings = settings
        self.device_id = device_id
        self.agent = agent
        self.on_change = on_change
        """Called on the loop with True/False when the link comes up or goes down."""
        self.on_command = on_command
        """Called with (command name or '?', outcome code) for every command (metrics)."""
        fleet = settings.fleet
        self.floor_path = floor_path
        """Where the newest accepted command's ts is kept (the replay floor after a restart); None: nowhere."""
        self._floor = _read_floor(floor_path)
        self.verifier = Verifier(fleet.trusted_keys, fleet.max_age, fleet.max_command_bytes, device_id, settings.device.groups,
                                 floor=self._floor)
        self._refusals = TokenBucket(REFUSAL_REPLIES_PER_S, REFUSAL_REPLIES_BURST)
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        """Messages handed to the loop and not yet handled (paho's thread adds, the loop takes away)."""
        self._shed = 0
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
            host, port, tls = broker_address(m.url)
        except ValueError as exc:
            raise ConfigError([f"[mqtt] url = {exc}"]) from None
        if m.password and not tls:
            _LOGGER.warning("[mqtt] password goes to the broker in clear text over mqtt://: use mqtts:// (with ca_file)")
        self._loop = asyncio.get_running_loop()
        client: Any = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"harken-{self.device_id}", protocol=mqtt.MQTTv5)
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
        client.on_message = lambda c, u, msg: self._intake(msg.topic, msg.payload, msg.properties)
        client.on_socket_open = protocol.no_delay
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        connect = Properties(PacketTypes.CONNECT)
        # The broker must not send more than a command may be: a huge publish is dropped there, not read here.
        connect.MaximumPacketSize = self.settings.fleet.max_command_bytes + PACKET_MARGIN
        client.connect_async(host, port, keepalive=m.keepalive, clean_start=True, properties=connect)
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
        # paho's network thread logs "Client is not connected" as an ERROR when it wakes after the
        # disconnect; on a deliberate close that is no error.
        client.disable_logger()
        if self.connected:
            info = client.publish(self.topic("status"), "offline", qos=1, retain=True)
            await asyncio.get_running_loop().run_in_executor(None, _wait_published, info, 2.0)
            self._set_connected(False)  # a leaving device, not a lost broker
            client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)
        self._set_connected(False)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
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
        from paho.mqtt.subscribeoptions import SubscribeOptions

        topics = [self.topic("cmd"), protocol.HA_STATUS] + [protocol.group_topic(g) for g in self.settings.device.groups]
        if self.settings.mqtt.ha_commands:
            topics.append(self.topic("ha/+"))
        client.subscribe([(t, SubscribeOptions(qos=1, noLocal=True)) for t in topics])
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
        shared = shareable(event, self.settings.privacy.share_transcripts)
        if shared is None:
            return
        payload = json.dumps(shared, default=str).encode()
        if self.connected and self._client is not None:
            self._client.publish(self.topic("events"), payload, qos=1)
            if shared["type"] == EventType.TIMER:  # Home Assistant's timer event entity reads its own topic
                self._client.publish(self.topic("timer"), json.dumps({"event_type": shared["action"], **shared}, default=str), qos=1)
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

    def forget(self, old_id: str) -> None:
        """Clear the retained messages left under a device id this device no longer uses."""
        if self._client is not None and old_id != self.device_id:
            for topic in (protocol.topic(old_id, "status"), protocol.topic(old_id, "state"), protocol.discovery_topic(old_id)):
                self._client.publish(topic, b"", qos=1, retain=True)

    async def _publish_metrics(self) -> None:
        # A random phase: devices that connect together (a fleet booting, a broker restarting)
        # must not report in lockstep.
        await asyncio.sleep(random.uniform(0, self.settings.mqtt.metrics_interval))
        while True:
            await asyncio.sleep(self.settings.mqtt.metrics_interval)
            self._count_shed()  # a flood that ended on shed messages: counted now, not at the next message
            if self.connected and self._client is not None:
                self._client.publish(self.topic("metrics"), json.dumps({"ts": round(time.time(), 3), **self.agent.metrics()}), qos=0)
                self.publish_state()  # its timestamp is the fleet's "last seen"

    # -- incoming ------------------------------------------------------------------------------------
    def _intake(self, topic: str, payload: bytes, props: Any) -> None:
        """paho's thread: hand the message to the loop, unless too many are already waiting there.

        A flood must not queue without bound on the loop (memory) or starve it (the
        watchdog reads the workers' frames on the same loop): past ``MAX_WAITING``
        messages are shed here, and counted."""
        with self._waiting_lock:
            if self._waiting >= MAX_WAITING:
                self._shed += 1
                return
            self._waiting += 1
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._message, topic, payload, props)

    def _message(self, topic: str, payload: bytes, props: Any) -> None:
        with self._waiting_lock:
            self._waiting -= 1
        self._count_shed()
        if topic == protocol.HA_STATUS:
            if payload.strip() == b"online":
                self.announce()
            return
        if topic.startswith(self.topic("ha/")):
            name = topic[len(self.topic("ha/")):]
            outcome = self.agent.home_assistant(name, payload) if self.settings.mqtt.ha_commands else "off"
            self._count(f"ha_{name}" if name in ("restart", "say") else "ha_?", outcome)
            return
        response_topic, correlation = getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)
        try:  # on the loop, at once: a refusal costs no task
            command = self.verifier.verify(payload)
        except CommandRejected as exc:
            self._count(exc.command or "?", exc.code)
            if exc.key_id is not None and self._refusals.take():  # a flood of replays is answered at a bounded rate
                self._reply(self._refusal(exc.command, exc.code, str(exc)), response_topic, exc.key_id, correlation)
            return  # unverified: no reply, or anyone could make the device publish
        self._keep_floor()
        self._spawn(self._command(command, response_topic, correlation), "mqtt-command")

    async def _command(self, command: Command, response_topic: Any, correlation: Any) -> None:
        name = command.name
        followup: Followup | None = None
        try:
            result = await self.agent.handle(command)
            if isinstance(result, Followup):
                followup, result = result, result.result
            reply: dict[str, Any] = {"ok": True, "device": self.device_id, "command": name, "result": result}
            outcome = "ok"
        except CommandFailed as exc:
            reply, outcome = self._refusal(name, exc.code, str(exc)), exc.code
        except Exception as exc:  # task boundary: a bug in a handler is a failed command, not a dead link
            _LOGGER.exception("command %s failed", name)
            reply, outcome = self._refusal(name, "failed", f"{type(exc).__name__}: {exc}"), "failed"
        self._count(name if outcome != "unknown_command" else "?", outcome)
        info = self._reply(reply, response_topic, command.key_id, correlation)
        if followup is not None:
            if info is not None:
                await asyncio.get_running_loop().run_in_executor(None, _wait_published, info, 2.0)
            followup.then()

    def _refusal(self, name: str | None, code: str, error: str) -> dict[str, Any]:
        """The reply to a command that was refused or failed (see protocol: CODE, and what to do)."""
        return {"ok": False, "device": self.device_id, "command": name, "code": code, "error": error}

    def _count_shed(self) -> None:
        with self._waiting_lock:
            shed, self._shed = self._shed, 0
        for _ in range(shed):
            self._count("?", "shed")

    def _count(self, name: str, outcome: str) -> None:
        if self.on_command is not None:
            self.on_command(name, outcome)

    def _keep_floor(self) -> None:
        """Persist the newest accepted ts (atomically) so a restart cannot make an accepted command fresh again."""

        highest = self.verifier.highest
        if self.floor_path is None or not highest > self._floor:
            return
        try:
            write_atomic(self.floor_path, f"{highest!r}\n")
            self._floor = highest
        except OSError as exc:
            _LOGGER.warning("cannot keep the replay floor in %s (%s): a restart could accept a replay", self.floor_path, exc.strerror)

    def _reply(self, reply: dict[str, Any], response_topic: Any, key_id: str, correlation: Any) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self._client is None:
            return None
        props = None
        if isinstance(correlation, (bytes, bytearray)) and len(correlation) <= 256:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = bytes(correlation)
        wanted = isinstance(response_topic, str) and protocol.reply_topic_allowed(response_topic, key_id)
        topic = response_topic if wanted else self.topic("reply")
        return self._client.publish(topic, json.dumps(reply, default=str), qos=1, properties=props)


def _read_floor(path: Path | None) -> float:
    if path is None:
        return -math.inf
    try:
        value = float(path.read_text().strip())
    except FileNotFoundError:
        return -math.inf
    except (OSError, ValueError) as exc:
        _LOGGER.warning("the replay floor in %s is unreadable (%s); commands signed up to max_age ago are refused", path, exc)
        return time.time()  # the safe side: nothing from before this start
    return value if math.isfinite(value) else -math.inf


def _wait_published(info: Any, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):  # not queued (connection already gone)
        pass
