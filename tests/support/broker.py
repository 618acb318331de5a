"""A real mosquitto broker on 127.0.0.1 for tests, and small paho-mqtt 2.x clients to talk to it.

The broker has two listeners, both bound to 127.0.0.1 only:

- ``port``     plain MQTT, anonymous clients allowed (``url``);
- ``tls_port`` MQTT over TLS with a server certificate signed by a CA made for this test
  session (``ca_file``), and a password file holding one login (``username``/``password``);
  anonymous clients are refused (``tls_url``).

Use the ``mosquitto`` fixture: one broker per test session, started again for the next test
if a test stopped it. Its retained messages do not survive a restart (persistence is off),
so give each test topics of its own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # until both listeners accept connections
STOP_TIMEOUT = 5.0  # after SIGTERM, before SIGKILL
CLIENT_TIMEOUT = 5.0  # connect, subscribe, publish of the helper clients
INSTALL_HINT = "apt-get install mosquitto (make test-deps)"
# mosquitto lives in /usr/sbin, which is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

T = TypeVar("T")


class BrokerError(RuntimeError):
    """The test broker could not be set up, started or stopped; the message holds its log."""


def tool(name: str, package: str) -> str:
    """The path of a command the broker needs; a missing one fails the test with the package to install."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (make test-deps)")
    return path


def free_ports(count: int) -> list[int]:
    """Distinct ports that were free a moment ago (the OS picks them; another process could take one before use)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _run(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BrokerError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")


# -- certificates -----------------------------------------------------------------------------

# Our own openssl config, so the system's openssl.cnf cannot add or change extensions.
# SKI/AKI are there because Python 3.13's default context (VERIFY_X509_STRICT) requires them.
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = harken-test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.0.2.100
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    """The CA certificate (PEM) that clients verify the broker against."""
    cert_file: Path
    """The broker's certificate, for IP:127.0.0.1 and DNS:localhost (and 10.0.2.100, the address a QEMU
    guest reaches the host's broker at in test_image.py), signed by the CA."""
    key_file: Path
    """The broker's private key (mode 0600)."""


def make_certs(directory: Path) -> Certs:
    """A CA and a server certificate signed by it (P-256, valid two days), made with the openssl CLI."""
    openssl = tool("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "openssl.cnf").write_text(OPENSSL_CNF)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run([openssl, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *key,
          "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=harken-test-ca"], directory)
    _run([openssl, "req", "-new", "-config", "openssl.cnf", *key,
          "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], directory)
    _run([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "2",
          "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.crt"], directory)
    return Certs(directory / "ca.crt", directory / "server.crt", directory / "server.key")


# -- the broker -------------------------------------------------------------------------------

class Mosquitto:
    """A ``mosquitto -c CONF`` child process with a plain and a TLS listener on fixed ports.

    The ports are chosen when the object is made and kept across restarts, so a client's
    reconnect reaches the same broker again (``ports`` fixes them instead). The broker's stdout
    and stderr go to ``log_file``.
    """

    def __init__(self, directory: Path, certs: Certs | None = None, username: str = "device",
                 ports: tuple[int, int] | None = None) -> None:
        self.exe = tool("mosquitto", "mosquitto")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certs = certs or make_certs(directory / "certs")
        self.host = HOST
        self.port, self.tls_port = ports or free_ports(2)
        self.username = username
        self.password = secrets.token_urlsafe(16)
        self.log_file = directory / "mosquitto.log"
        self.conf_file = directory / "mosquitto.conf"
        self._write_password_file(directory / "passwd")
        self.conf_file.write_text(self._config(directory / "passwd"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.certs.ca_file

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_password_file(self, path: Path) -> None:
        passwd = tool("mosquitto_passwd", "mosquitto")
        _run([passwd, "-b", "-c", str(path), self.username, self.password], self.directory)

    def _config(self, password_file: Path) -> str:
        lines = [
            "per_listener_settings true",  # must come before the listeners
            "persistence false",
            "set_tcp_nodelay true",
            "log_dest stderr",  # stdout is block-buffered when redirected
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user `mosquitto`, which cannot read our 0600 key.
            lines.append("user root")
        lines += [
            "",
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "",
            f"listener {self.tls_port} {HOST}",
            "allow_anonymous false",
            f"password_file {password_file}",
            f"cafile {self.certs.ca_file}",
            f"certfile {self.certs.cert_file}",
            f"keyfile {self.certs.key_file}",
        ]
        return "\n".join(lines) + "\n"

    def log(self, since: int = 0) -> str:
        """The broker's log (all starts, appended), from byte offset ``since``."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(since)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker and wait until it runs and both listeners accept connections."""
        if self.running:
            return
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen([self.exe, "-c", str(self.conf_file)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, cwd=self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise BrokerError(f"mosquitto exited ({code}) while starting; its log:\n{self.log(offset)}")
            # "running" is logged once every listener is bound: until then a port could still belong to
            # another process that took it after free_ports() let it go.
            if " running" in self.log(offset) and self._accepts(self.port) and self._accepts(self.tls_port):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not accept connections on {self.port} and {self.tls_port} "
                          f"within {timeout} s; its log:\n{self.log(offset)}")

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, a bounded wait, then SIGKILL. Clients see their connection drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(f"mosquitto (pid {proc.pid}) survived SIGKILL for {timeout} s") from exc

    def restart(self) -> None:
        """Stop and start again, on the same ports. Retained messages are lost."""
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start the broker if it is not running (never started, stopped by a test, or died)."""
        if not self.running:
            self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mosquitto({self.url}, {self.tls_url}, pid={self.pid})"


_SHARED = pytest.StashKey[Mosquitto]()


@pytest.fixture
def mosquitto(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    """The session's broker, running. Made and started on first use, stopped when the session ends.

    The object lives for the whole session; the fixture itself is per test so that it can start the
    broker again when an earlier test stopped it. It keeps its one instance in the pytest config, so
    importing this fixture into conftest.py and into a test module still gives a single broker.
    """
    return shared_broker(request.config, tmp_path_factory)


def shared_broker(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    """The session's one broker, running (for fixtures of a wider scope than ``mosquitto``)."""
    broker = config.stash.get(_SHARED, None)
    if broker is None:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
        config.stash[_SHARED] = broker
        config.add_cleanup(broker.stop)
    broker.ensure_running()
    return broker


def tls_login(broker: Mosquitto) -> str:
    """The [mqtt] keys (TOML lines) that put a device on the broker's TLS + password listener."""
    return (f'url = "{broker.tls_url}"\nusername = "{broker.username}"\npassword = "{broker.password}"\n'
            f'ca_file = "{broker.ca_file}"\n')


# -- clients ----------------------------------------------------------------------------------

Login = tuple[str, str] | Literal["broker"] | None


def mqtt_client(broker: Mosquitto, *, tls: bool = False, login: Login = "broker",
                client_id: str | None = None) -> mqtt.Client:
    """A paho 2.x MQTT 5 client set up for one of the broker's listeners (not connected).

    ``login``: "broker" uses the broker's login on the TLS listener (none on the plain one),
    None connects anonymously, and a (username, password) pair is sent as given.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
                         protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(ca_certs=str(broker.ca_file))
    if login == "broker":
        if tls:
            client.username_pw_set(broker.username, broker.password)
    elif login is not None:
        client.username_pw_set(*login)
    return client


def _port(broker: Mosquitto, tls: bool) -> int:
    return broker.tls_port if tls else broker.port


def _wait(condition: threading.Condition, ready: Callable[[], T], timeout: float) -> T:
    """Wait on ``condition`` (held by the caller) until ``ready()`` is truthy; returns it, or the last falsy value."""
    deadline = time.monotonic() + timeout
    result = ready()
    while not result and (left := deadline - time.monotonic()) > 0:
        condition.wait(left)
        result = ready()
    return result


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    properties: Properties | None


class Subscriber:
    """Subscribes (QoS 1) to ``topics`` and records every message, until ``close()``.

    It runs paho's network thread and reconnects on its own (backoff 0.1 s to 1 s), subscribing
    again on every connect; ``connects`` counts the successful ones.
    """

    def __init__(self, broker: Mosquitto, topics: str | Iterable[str], tls: bool = False,
                 timeout: float = CLIENT_TIMEOUT) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self.connects = 0
        self._subscribed = 0  # SUBACKs; compared with connects
        self._failure: str | None = None
        self.client = mqtt_client(broker, tls=tls)
        self.client.suppress_exceptions = True
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, _port(broker, tls))
        self.client.loop_start()
        with self._cond:
            ok = _wait(self._cond, lambda: self._failure or (self.connects and self._subscribed >= self.connects), timeout)
        if not ok or self._failure:
            self.close()
            raise BrokerError(f"subscriber on {broker!r} not subscribed within {timeout} s: {self._failure or 'no CONNACK/SUBACK'}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            if rc.is_failure:
                self._failure = f"connect refused: {rc}"
            else:
                self.connects += 1
                client.subscribe([(topic, 1) for topic in self.topics])
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        with self._cond:
            failed = [str(code) for code in codes if code.is_failure]
            if failed:
                self._failure = f"subscribe refused: {failed}"
            self._subscribed += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Message(msg.topic, msg.payload, bool(msg.retain), msg.properties))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[list[Message]], T], timeout: float = CLIENT_TIMEOUT) -> T:
        """Wait until ``predicate(messages so far)`` is truthy and return its value; fail the test after ``timeout``."""
        with self._cond:
            found = _wait(self._cond, lambda: predicate(list(self._messages)), timeout)
            if found:
                return found
            seen = [(m.topic, m.payload[:80]) for m in self._messages]
        pytest.fail(f"no matching message within {timeout} s on {self.topics}; got {seen}")

    def wait_connected(self, count: int, timeout: float = CLIENT_TIMEOUT) -> None:
        """Wait until the client has connected (and subscribed) ``count`` times in all."""
        with self._cond:
            if not _wait(self._cond, lambda: self.connects >= count and self._subscribed >= count, timeout):
                pytest.fail(f"subscriber connected {self.connects} time(s), not {count}, within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish_properties(values: dict[str, Any]) -> Properties:
    """MQTT 5 PUBLISH properties from names, e.g. {"ResponseTopic": "a/b", "CorrelationData": b"1"}."""
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def publish(broker: Mosquitto, topic: str, payload: bytes | str, retain: bool = False,
            properties: Properties | dict[str, Any] | None = None, tls: bool = False,
            timeout: float = CLIENT_TIMEOUT) -> None:
    """Connect, publish at QoS 1, wait for the PUBACK, disconnect. Each step is bounded by ``timeout``."""
    if isinstance(properties, dict):
        properties = publish_properties(properties)
    cond = threading.Condition()
    got: dict[str, ReasonCode] = {}

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with cond:
            got["connack"] = rc
            cond.notify_all()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with cond:
            got["puback"] = rc
            cond.notify_all()

    client = mqtt_client(broker, tls=tls)
    client.on_connect, client.on_publish = on_connect, on_publish
    client.connect(broker.host, _port(broker, tls))
    client.loop_start()
    try:
        with cond:
            _wait(cond, lambda: "connack" in got, timeout)
        connack = got.get("connack")
        if connack is None or connack.is_failure:
            raise BrokerError(f"publish to {topic}: no CONNACK within {timeout} s" if connack is None
                              else f"publish to {topic}: connect refused: {connack}")
        client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        with cond:
            _wait(cond, lambda: "puback" in got, timeout)
        puback = got.get("puback")
        if puback is None or puback.is_failure:  # "No matching subscribers" is not a failure
            raise BrokerError(f"publish to {topic}: no PUBACK within {timeout} s" if puback is None
                              else f"publish to {topic}: refused: {puback}")
    finally:
        client.disconnect()
        client.loop_stop()
