"""Hostile and mistaken messages against a real device (`harken run`, real workers) on a real mosquitto.

Each test is one hole that was open before: after every hostile message the device is still
online, still answers a signed ping, its overrides still load, and it did nothing it should not have.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest

from harken.fleet.operator import FleetClient
from harken.fleet.signing import generate_keypair, load_private_key
from support.broker import Subscriber, mqtt_client, publish, shared_broker, tls_login
from support.harness import harken_cmd, read_events, silence, stderr_of, wait_for, words

DEVICE = "abuse1"
CONFIRM_WITHIN = 6.0
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("abuse-keys")
    key, pub = generate_keypair(out)
    return {"signer": load_private_key(key), "pub": pub.read_text().strip()}


class Device:
    """One `harken run` that can be stopped and started again on the same data directory."""

    def __init__(self, tmp: Path, clip: Path, cfg: Path) -> None:
        self.tmp, self.clip, self.cfg = tmp, clip, cfg
        self.data = tmp / "data"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.events = self.tmp / f"events-{self.starts}.jsonl"
        self.stdout = self.tmp / f"stdout-{self.starts}.txt"
        self.stderr_path = self.tmp / f"stderr-{self.starts}.txt"
        with self.stdout.open("w") as out, self.stderr_path.open("w") as err:
            # Not quiet: stdout is what the journal would get.
            self.proc = subprocess.Popen(
                harken_cmd("run", "--data-dir", str(self.data), "--input", str(self.clip), "--events", str(self.events),
                           "--control", str(self.tmp / "control.sock"), "--config", str(self.cfg)),
                stdout=out, stderr=err, text=True)
        self.proc.stderr_path = self.stderr_path  # type: ignore[attr-defined]
        wait_for(self.events, lambda ev: [e for e in ev if e["type"] == "ready"], self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def read_events(self) -> list[dict]:
        return read_events(self.events)


@pytest.fixture(scope="module")
def device(request, tmp_path_factory, make_clip, keys, voices):
    broker = shared_broker(request.config, tmp_path_factory)
    tmp = tmp_path_factory.mktemp("abuse")
    cfg = tmp / "harken.toml"
    cfg.write_text(f"""
[device]
id = "{DEVICE}"
groups = ["lab"]
[mqtt]
{tls_login(broker)}metrics_interval = 1.0
ha_commands = true
ha_restart_interval = 5.0
[fleet]
trusted_keys = ["{keys['pub']}"]
max_age = 120.0
confirm_within = {CONFIRM_WITHIN}
[metrics]
listen = ""
""")
    clip = make_clip("abuse-question", silence(4.0), voices.piper("Hey Jarvis."), silence(0.6), voices.piper(QUESTION),
                     silence(900.0))
    # Everything the device publishes, from before it starts: the privacy test reads it.
    watch = Subscriber(broker, [f"harken/{DEVICE}/{leaf}" for leaf in ("status", "state", "events", "metrics", "reply", "ha/#")]
                       + ["homeassistant/#"])
    dev = Device(tmp, clip, cfg)
    dev.broker, dev.watch = broker, watch  # type: ignore[attr-defined]
    dev.start()
    yield dev
    watch.close()
    broker.ensure_running()
    dev.stop()


def send(device, keys, command, device_id=DEVICE, timeout=20.0, **args):
    with FleetClient(device.broker.url, timeout=timeout) as client:
        return client.send(keys["signer"], command, args, devices=[device_id]).get(device_id)


def serves(device, keys, device_id=DEVICE, within=60.0):
    """The device answers a signed ping (retried: it may be reconnecting); the answer, or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        reply = send(device, keys, "ping", device_id=device_id, timeout=3.0)
        if reply is not None:
            return reply
    return None


def pids(device, keys):
    return {w["role"]: w["pid"] for w in send(device, keys, "get_state")["result"]["workers"]}


def overrides_load(device) -> dict:
    path = device.data / "fleet-overrides.toml"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def counted(device, keys) -> dict[tuple[str, str], float]:
    snap = send(device, keys, "get_metrics")["result"]["harken_commands_total"]
    return {(name, outcome): n for name, outcomes in snap.items() for outcome, n in outcomes.items()}


def settled(device, keys, done, within=15.0):
    """The command counters once ``done(counters)`` holds (messages from other clients may still be on their way)."""
    deadline = time.monotonic() + within
    while True:
        counts = counted(device, keys)
        if done(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.3)


def vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def still_fine(device, keys):
    assert device.proc.poll() is None, stderr_of(device.proc)
    assert serves(device, keys) is not None
    overrides_load(device)


# -- 6. privacy --------------------------------------------------------------------------------------
def test_what_is_said_in_the_room_does_not_leave_the_device(device, keys):
    local = wait_for(device.events, lambda ev: [e for e in ev if e["type"] == "utterance"], device.proc)
    heard = local[0]["transcript"]
    assert {"capital", "france"} <= set(words(heard))  # it did hear the question (the local events file has it)
    time.sleep(1.5)  # the state refresh after the utterance
    published = device.watch.messages
    said = {"capital", "france"} | ({"paris"} & set(words(local[0]["reply"])))
    for msg in published:
        assert not said & set(words(msg.payload.decode(errors="replace"))), (msg.topic, msg.payload[:200])
    events = [json.loads(m.payload) for m in published if m.topic == f"harken/{DEVICE}/events"]
    utterances = [e for e in events if e["type"] == "utterance"]
    assert utterances and "transcript" not in utterances[0] and utterances[0]["latency"]  # latencies are shared
    state = json.loads([m for m in published if m.topic == f"harken/{DEVICE}/state"][-1].payload)
    assert "last_heard" not in state and state["last_latency"]
    journal = device.stdout.read_text()
    assert "heard: (" in journal and "capital" not in journal.lower()


# -- 3. replies go only where the operator's key allows ---------------------------------------------
def test_no_message_can_make_the_device_publish_on_its_own_command_topics(device, keys):
    before = pids(device, keys)
    base = f"harken/{DEVICE}"
    with Subscriber(device.broker, [f"{base}/ha/#", f"{base}/reply", f"{base}/cmd"]) as sub:
        # Unsigned junk asking for its refusal on the restart button's topic (this restarted every worker).
        publish(device.broker, f"{base}/cmd", b"{junk", properties={"ResponseTopic": f"{base}/ha/restart",
                                                                    "CorrelationData": b"x"})
        # A signed ping asking for its answer on the say box, and on another key's prefix.
        for topic in (f"{base}/ha/say", "harken/operator/0000000000000000/r", f"{base}/cmd"):
            publish(device.broker, f"{base}/cmd", keys["signer"].sign("ping", {}, f"device:{DEVICE}"),
                    properties={"ResponseTopic": topic, "CorrelationData": b"y"})
        sub.wait_for(lambda ms: len([m for m in ms if m.topic == f"{base}/reply"]) >= 3, timeout=20)
        time.sleep(3.0)
        msgs = sub.messages
    assert [m.topic for m in msgs if "/ha/" in m.topic] == []
    assert len([m for m in msgs if m.topic == f"{base}/cmd"]) == 4  # only ours
    replies = [json.loads(m.payload) for m in msgs if m.topic == f"{base}/reply"]
    assert len(replies) == 3 and all(r["ok"] and r["command"] == "ping" for r in replies)  # none for the junk
    assert pids(device, keys) == before
    still_fine(device, keys)


# -- 4. Home Assistant's unsigned button and text box ------------------------------------------------
def test_home_assistant_restarts_are_rate_limited_and_serialised(device, keys):
    base = f"harken/{DEVICE}/ha"
    before_counts, before = counted(device, keys), pids(device, keys)
    for _ in range(6):  # a press every few hundred ms: one restart, the rest ignored
        publish(device.broker, f"{base}/restart", b"PRESS")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(p == before[r] for r, p in pids(device, keys).items()):
        time.sleep(0.5)
    after = pids(device, keys)
    assert all(after[r] != before[r] for r in before)  # one restart of every worker happened
    counts = settled(device, keys, lambda c: sum(c.get(("ha_restart", o), 0) for o in ("ok", "busy", "too_soon"))
                     - sum(before_counts.get(("ha_restart", o), 0) for o in ("ok", "busy", "too_soon")) >= 6)
    ignored = sum(counts.get(("ha_restart", o), 0) - before_counts.get(("ha_restart", o), 0) for o in ("busy", "too_soon"))
    assert counts.get(("ha_restart", "ok"), 0) - before_counts.get(("ha_restart", "ok"), 0) == 1 and ignored == 5
    # A signed restart at the same time as the button: serialised, no crash.
    time.sleep(5.5)
    publish(device.broker, f"{base}/restart", b"PRESS")
    assert send(device, keys, "restart_worker", role="tts", timeout=90)["ok"]
    logs = "\n".join(send(device, keys, "get_logs", lines=1000)["result"]["lines"])
    assert "IllegalTransition" not in logs and "Traceback" not in logs
    still_fine(device, keys)


def test_home_assistant_texts_wait_in_a_bounded_queue(device, keys):
    before = counted(device, keys)
    for i in range(12):
        publish(device.broker, f"harken/{DEVICE}/ha/say", f"Message number {i}.".encode())
    counts = settled(device, keys, lambda c: sum(c.get(("ha_say", o), 0) - before.get(("ha_say", o), 0)
                                                  for o in ("ok", "dropped_oldest")) >= 12)
    delta = {o: counts.get(("ha_say", o), 0) - before.get(("ha_say", o), 0) for o in ("ok", "dropped_oldest")}
    assert sum(delta.values()) == 12 and delta["dropped_oldest"] >= 12 - 3 - 2  # queue of 3 (+ one being spoken)
    still_fine(device, keys)


# -- 5. a huge publish is stopped at the broker ----------------------------------------------------------
def test_a_huge_publish_never_reaches_the_device(device, keys):
    pid = device.proc.pid
    peak = vm(pid, "VmHWM")
    publish(device.broker, f"harken/{DEVICE}/cmd", b"x" * (60 * 1024 * 1024), timeout=60)
    still_fine(device, keys)
    assert vm(pid, "VmHWM") - peak < 20 * 1024 * 1024  # it read 436 MB for 100 MB before


# -- 1 and 2. set_config ---------------------------------------------------------------------------------
def test_set_config_writes_only_what_loads_and_refuses_what_would_cut_the_device_off(device, keys):
    prompt = "Be brief 🙂 and kind."
    ok = send(device, keys, "set_config", section="llm", key="system_prompt", value=prompt)
    assert ok["ok"] and ok["result"]["applied"] == "now"
    assert overrides_load(device)["llm"]["system_prompt"] == prompt
    saved = (device.data / "fleet-overrides.toml").read_bytes()
    for section, key, value, extra in [
        ("mqtt", "url", "mqtt://", {"confirm": True}), ("mqtt", "url", "mqtt://broker:99999", {"confirm": True}),
        ("device", "groups", ["#"], {}), ("paths", "data_dir", "/tmp/elsewhere", {}),
        ("fleet", "trusted_keys", [], {}), ("mqtt", "url", "", {}), ("device", "id", "other", {}),
        ("wake", "threshold", "nan", {}),
    ]:
        reply = send(device, keys, "set_config", section=section, key=key, value=value, **extra)
        assert reply["ok"] is False and reply["code"] == "bad_args", (section, key, value, reply)
    assert (device.data / "fleet-overrides.toml").read_bytes() == saved
    still_fine(device, keys)


def test_a_lockout_change_that_is_not_confirmed_rolls_back_by_itself(device, keys):
    reply = send(device, keys, "set_config", section="fleet", key="trusted_keys", value=[], confirm=True)
    assert reply["ok"] and "on trial" in reply["result"]["applied"]
    time.sleep(1.5)  # the reply went out on the old link; now the new one
    assert send(device, keys, "ping", timeout=3.0) is None  # no key is trusted now: nothing is answered
    assert serves(device, keys, within=CONFIRM_WITHIN + 30) is not None  # and then the old keys are back
    assert "trusted_keys" not in overrides_load(device).get("fleet", {})
    assert [e for e in device.read_events() if e["type"] == "error" and e["stage"] == "config" and "not confirmed" in e["message"]]
    # A wrong password: the reply never repeats it, the broker refuses the device, and it comes back.
    wrong = send(device, keys, "set_config", section="mqtt", key="password", value="hunter2-wrong", confirm=True)
    assert wrong["ok"] and wrong["result"]["value"] == "***" and "hunter2" not in json.dumps(wrong)
    # The trial begins when the device has left the old link, which may still answer a ping or two: wait for the
    # trial's end (the override rolled back), not for the first answer.
    deadline = time.monotonic() + CONFIRM_WITHIN + 40
    while "password" in overrides_load(device).get("mqtt", {}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "password" not in overrides_load(device).get("mqtt", {})
    assert serves(device, keys, within=40) is not None


def test_a_confirmed_change_of_id_stays(device, keys):
    reply = send(device, keys, "set_config", section="device", key="id", value="abuse-renamed", confirm=True)
    assert reply["ok"]
    assert serves(device, keys, device_id="abuse-renamed", within=30) is not None  # the ping confirms it
    time.sleep(CONFIRM_WITHIN + 2)
    state = send(device, keys, "get_state", device_id="abuse-renamed")["result"]
    assert state["device"] == "abuse-renamed" and state["config_trial"] is None
    with Subscriber(device.broker, [f"harken/{DEVICE}/status", f"harken/{DEVICE}/state"]) as sub:
        time.sleep(2.0)  # retained messages arrive at once on subscribing
        assert [m for m in sub.messages if m.retain] == []  # the old id left nothing behind for `fleet ls`
    back = send(device, keys, "set_config", device_id="abuse-renamed", section="device", key="id", value=DEVICE, confirm=True)
    assert back["ok"] and serves(device, keys, within=30) is not None
    assert send(device, keys, "confirm_config")["result"]["confirmed"] in (None, "device.id")
    assert overrides_load(device)["device"]["id"] == DEVICE


# -- the fuzz pass ------------------------------------------------------------------------------------------
def _fuzz_messages(keys, count: int, rng: random.Random):
    base = f"harken/{DEVICE}"
    signed = [keys["signer"].sign("ping", {}, f"device:{DEVICE}") for _ in range(20)]
    topics = [f"{base}/cmd"] * 6 + [f"{base}/ha/restart", f"{base}/ha/say", f"{base}/ha/{{x}}", "harken/group/lab/cmd",
                                    f"{base}/reply", "homeassistant/status", f"{base}/ha/restart/extra"]
    own = [f"{base}/ha/restart", f"{base}/ha/say", f"{base}/cmd", "homeassistant/status", "harken/group/lab/cmd", "$SYS/x"]
    for i in range(count):
        kind = i % 8
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 3000))
        elif kind == 1:  # a signed envelope with one byte flipped
            env = bytearray(rng.choice(signed))
            env[rng.randrange(len(env))] ^= 1 << rng.randrange(8)
            payload = bytes(env)
        elif kind == 2:  # fields swapped, dropped or of the wrong type
            env = json.loads(rng.choice(signed))
            field = rng.choice(["v", "key", "body", "sig"])
            env[field] = rng.choice([None, 1, [], {}, "", "x" * 100, True, -1, 1e308])
            payload = json.dumps(env).encode()
        elif kind == 3:  # nested deeply, in the envelope or in a (forged) body
            depth = rng.choice([100, 1000, 100000])
            nest = "[" * depth + "]" * depth
            payload = (nest if rng.random() < 0.5 else json.dumps(
                {"v": 1, "key": "a" * 16, "body": base64.b64encode(nest.encode()).decode(), "sig": "AA=="})).encode()
        elif kind == 4:  # over the command limit, under the packet limit
            payload = b'{"v":1,"body":"' + b"A" * rng.randrange(65000, 69000) + b'"}'
        elif kind == 5:  # valid JSON of every shape
            payload = json.dumps(rng.choice([[], {}, 1, "s", None, {"v": 1}, {"v": 2, "key": "k"}, {"v": 1, "key": "k", "body": "", "sig": "x"}])).encode()
        elif kind == 6:
            payload = "🙂\x00\ud83d".encode("utf-8", "surrogatepass")
        else:  # a replay of a ping already accepted
            payload = signed[0]
        props = {}
        if rng.random() < 0.7:
            props["ResponseTopic"] = rng.choice(own + [f"harken/operator/{keys['signer'].key_id}/fuzz/reply", "a" * 300])
        if rng.random() < 0.5:
            props["CorrelationData"] = rng.randbytes(rng.randrange(0, 600))
        if rng.random() < 0.2:
            props["UserProperty"] = [("k" * rng.randrange(1, 50), "v" * rng.randrange(1, 500))]
        yield rng.choice(topics), payload, props


def test_fuzz_ten_thousand_hostile_messages(device, keys):
    from support.broker import publish_properties

    still_fine(device, keys)
    pid = device.proc.pid
    rss_before = vm(pid, "VmRSS")
    rng = random.Random(8)
    client = mqtt_client(device.broker)
    done = threading.Event()
    client.on_connect = lambda *a: done.set()
    client.max_queued_messages_set(0)
    client.connect(device.broker.host, device.broker.port)
    client.loop_start()
    try:
        assert done.wait(20)
        sent_to_ha = 0
        infos = []
        for topic, payload, props in _fuzz_messages(keys, 10_000, rng):
            sent_to_ha += "/ha/" in topic
            infos.append(client.publish(topic, payload, qos=1, properties=publish_properties(props) if props else None))
            if len(infos) >= 200:  # at the broker's pace: wait for its acknowledgements
                for info in infos:
                    info.wait_for_publish(30)
                infos.clear()
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(3.0)
    still_fine(device, keys)
    assert vm(pid, "VmRSS") - rss_before < 60 * 1024 * 1024
    status = [m for m in device.watch.messages if m.topic == f"harken/{DEVICE}/status"]
    assert status[-1].payload == b"online"
    ha_seen = [m for m in device.watch.messages if "/ha/" in m.topic]
    assert len(ha_seen) <= sent_to_ha + 12 + 6 + 1  # ours only (and the earlier tests'): the device published none


# -- 7 and 1. after a restart -------------------------------------------------------------------------------
def test_after_a_restart_no_replay_and_a_spoiled_overrides_file_is_set_aside(device, keys):
    captured = keys["signer"].sign("mute", {}, f"device:{DEVICE}")
    with FleetClient(device.broker.url, timeout=20) as client:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        topic = f"harken/operator/{keys['signer'].key_id}/replay/reply"
        with Subscriber(device.broker, [topic]) as sub:
            props.ResponseTopic, props.CorrelationData = topic, b"r"
            client.client.publish(f"harken/{DEVICE}/cmd", captured, qos=1, properties=props)
            assert json.loads(sub.wait_for(lambda ms: ms)[0].payload)["ok"]
    assert send(device, keys, "unmute")["ok"]
    device.stop()
    # What the old writer produced for an emoji: the device used to exit 2 at every start from now on.
    (device.data / "fleet-overrides.toml").write_text('[llm]\nsystem_prompt = "Be brief \\ud83d\\ude42"\n')
    device.start()
    # The device reports its configuration's problems just after "ready": wait for them (bounded), don't race them.
    problems = wait_for(device.events, lambda ev: [e for e in ev if e["type"] == "error" and e["stage"] == "config"],
                        device.proc)
    assert problems and "does not load" in problems[0]["message"]
    assert list(device.data.glob("fleet-overrides.toml.rejected-*"))
    state = send(device, keys, "get_state")["result"]
    assert state["config_problems"] and state["muted"] is False
    with Subscriber(device.broker, [topic]) as sub:
        publish(device.broker, f"harken/{DEVICE}/cmd", captured, properties={"ResponseTopic": topic, "CorrelationData": b"r"})
        reply = json.loads(sub.wait_for(lambda ms: ms)[0].payload)
    assert reply["ok"] is False and reply["code"] == "stale" and "before it last started" in reply["error"], reply
    assert send(device, keys, "get_state")["result"]["muted"] is False
    still_fine(device, keys)
