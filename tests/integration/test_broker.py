"""The test broker itself: what the fleet tests rely on when they talk to it."""

from __future__ import annotations

import socket
import ssl
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from support.broker import BrokerError, Mosquitto, Subscriber, free_ports, mosquitto, mqtt_client, publish  # noqa: F401

TIMEOUT = 5.0


def fresh_topic() -> str:
    """A topic of the test's own: the broker and its retained messages are shared by the session."""
    return f"test/{uuid.uuid4().hex}"


def connack(client: mqtt.Client, broker: Mosquitto, port: int) -> ReasonCode:
    """Connect once and return the broker's CONNACK reason code; bounded, no network thread, no retries."""
    got: list[ReasonCode] = []
    client.on_connect = lambda client, userdata, flags, rc, props: got.append(rc)
    client.connect(broker.host, port)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not got and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    finally:
        client.disconnect()
    assert got, f"no CONNACK within {TIMEOUT} s"
    return got[0]


def test_retained_message_reaches_a_later_subscriber_on_the_plain_listener(mosquitto):
    topic = fresh_topic()
    publish(mosquitto, topic, b"online", retain=True, properties={"ContentType": "text/plain"})
    with Subscriber(mosquitto, [topic]) as sub:
        [msg] = sub.wait_for(lambda msgs: msgs)
    assert (msg.topic, msg.payload, msg.retain) == (topic, b"online", True)
    assert msg.properties.ContentType == "text/plain"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


def test_tls_listener_with_the_login_verifies_the_server_against_the_test_ca(mosquitto):
    assert mosquitto.tls_url == f"mqtts://127.0.0.1:{mosquitto.tls_port}"
    topic = fresh_topic()
    with Subscriber(mosquitto, topic, tls=True) as sub:
        publish(mosquitto, topic, b"hello", tls=True)
        msgs = sub.wait_for(lambda msgs: [m for m in msgs if m.payload == b"hello"])
    assert msgs[0].retain is False

    # The test CA is what makes it work: the certificate is for IP 127.0.0.1 and no system CA knows it.
    assert handshake(ssl.create_default_context(cafile=mosquitto.ca_file), mosquitto) == mosquitto.tls_port
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ssl.create_default_context(), mosquitto)


def handshake(context: ssl.SSLContext, broker: Mosquitto) -> int:
    with socket.create_connection((broker.host, broker.tls_port), timeout=TIMEOUT) as sock:
        with context.wrap_socket(sock, server_hostname=broker.host) as tls:
            return tls.getpeername()[1]


@pytest.mark.parametrize("login", [("device", "wrong password"), None], ids=["wrong-password", "anonymous"])
def test_tls_listener_refuses_a_wrong_password_and_anonymous_clients(mosquitto, login):
    client = mqtt_client(mosquitto, tls=True, login=login)
    rc = connack(client, mosquitto, mosquitto.tls_port)
    assert rc.is_failure, rc


def test_plain_listener_takes_anonymous_clients(mosquitto):
    assert not connack(mqtt_client(mosquitto), mosquitto, mosquitto.port).is_failure


def test_restart_keeps_the_ports_and_a_reconnecting_client_comes_back(mosquitto):
    ports, pid = (mosquitto.port, mosquitto.tls_port), mosquitto.pid
    topic = fresh_topic()
    with Subscriber(mosquitto, topic) as sub:
        mosquitto.restart()
        assert (mosquitto.port, mosquitto.tls_port) == ports and mosquitto.pid != pid
        sub.wait_connected(2)  # and subscribed again
        publish(mosquitto, topic, b"after restart")
        sub.wait_for(lambda msgs: [m for m in msgs if m.payload == b"after restart"])


def test_a_stopped_broker_is_started_again_on_the_same_ports(mosquitto):
    ports = (mosquitto.port, mosquitto.tls_port)
    mosquitto.stop()
    assert not mosquitto.running
    with pytest.raises(ConnectionRefusedError):
        publish(mosquitto, fresh_topic(), b"nobody home")
    mosquitto.ensure_running()  # what the fixture does for the next test
    assert mosquitto.running and (mosquitto.port, mosquitto.tls_port) == ports
    publish(mosquitto, fresh_topic(), b"back")


def test_a_broker_that_cannot_start_fails_with_its_log(tmp_path, mosquitto):
    taken = mosquitto.tls_port  # by the session's broker
    other = Mosquitto(tmp_path, certs=mosquitto.certs, ports=(free_ports(1)[0], taken))
    with pytest.raises(BrokerError, match="(?s)exited.*Address already in use"):
        other.start()
    assert not other.running
