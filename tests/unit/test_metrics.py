"""Metrics from real events, sensors on fixture trees and the real /proc, and the exporter over real HTTP.

Fixture trees live in ``tests/fixtures/metrics``: ``proc/4242`` (a worker, comm with
spaces and parentheses), ``proc/4243`` (a zombie: no VmRSS), and sysfs trees
``sys-cpu-zone``, ``sys-jetson``, ``sys-two-zones``, ``sys-garbage``, ``sys-no-zones``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from harken.events import EventLog
from harken.hw import sensors
from harken.supervisor.health import Health, Policy
from harken.telemetry.metrics import STAGES, WORKER_STATES, Exporter, Metrics
from support.paths import FIXTURES

FIX = FIXTURES / "metrics"
PROC = FIX / "proc"
HTTP_TIMEOUT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def latency(**given: float | None) -> dict[str, Any]:
    """An utterance event's ``latency`` dict: every stage, None unless given, and ``speculative``."""
    return {**dict.fromkeys(STAGES), **given, "speculative": False}


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# -- comparing the snapshot with the exposition -------------------------------------------------------
def leaves(tree: Any, path: tuple = ()) -> dict[tuple, float]:
    """{(key, label values..., [count|sum]): value} for every number in a snapshot."""
    if isinstance(tree, dict):
        out: dict[tuple, float] = {}
        for key, sub in tree.items():
            out.update(leaves(sub, (*path, key)))
        return out
    assert isinstance(tree, (int, float)) and not isinstance(tree, bool), (path, tree)
    return {path: tree}


def parsed_leaves(exposition: bytes) -> tuple[set[str], dict[tuple, float]]:
    """The same, read from the text format by prometheus_client's own parser, independently of ``snapshot``."""
    keys: set[str] = set()
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        key = family.name + "_total" if family.type == "counter" else family.name
        keys.add(key)
        for s in family.samples:
            values = tuple(v for k, v in s.labels.items() if k != "le")
            if family.type == "histogram":
                if s.name == family.name + "_bucket":
                    continue
                field = {family.name + "_count": "count", family.name + "_sum": "sum"}[s.name]
                out[(key, *values, field)] = s.value
            else:
                assert s.name == key, (s.name, key)  # no _created, nothing unexpected
                out[(key, *values)] = s.value
    return keys, out


def mismatches(snapshot: dict[str, Any], exposition: bytes) -> list[str]:
    keys, expected = parsed_leaves(exposition)
    got = leaves(snapshot)
    problems = [f"families: snapshot has {sorted(set(snapshot) - keys)}, exposition has {sorted(keys - set(snapshot))}"
                ] if set(snapshot) != keys else []
    for path in sorted(set(got) | set(expected), key=str):
        if got.get(path) != expected.get(path):
            problems.append(f"{path}: snapshot {got.get(path)!r}, exposition {expected.get(path)!r}")
    return problems


# -- sensors ------------------------------------------------------------------------------------------
def test_rss_and_cpu_from_the_fixture_proc():
    assert sensors.rss_bytes(4242, PROC) == 897536 * 1024
    assert sensors.cpu_seconds(4242, PROC) == pytest.approx((1234 + 66) / os.sysconf("SC_CLK_TCK"))
    assert sensors.rss_bytes(4243, PROC) is None  # a zombie has no memory of its own
    assert sensors.cpu_seconds(4243, PROC) == pytest.approx(15 / os.sysconf("SC_CLK_TCK"))
    assert sensors.rss_bytes(999999, PROC) is None  # gone
    assert sensors.cpu_seconds(999999, PROC) is None


def test_rss_and_cpu_of_this_process_from_the_real_proc():
    before = sensors.rss_bytes(os.getpid())
    assert before is not None and before > 1 << 20
    block = b"\x01" * (64 << 20)  # 64 MiB, every page written
    after = sensors.rss_bytes(os.getpid())
    assert after is not None and after - before >= 48 << 20, (before, after)
    del block
    t0 = os.times()
    used = sensors.cpu_seconds(os.getpid())
    t1 = os.times()
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert used is not None
    assert t0.user + t0.system - tick <= used <= t1.user + t1.system + tick


@pytest.mark.parametrize("tree, celsius", [
    ("sys-cpu-zone", 48.312),  # the CPU zone, though the GPU zone is hotter
    ("sys-jetson", 53.25),  # the hotter of the CPU/SoC zones
    ("sys-two-zones", 41.0),  # no CPU zone: the hottest
    ("sys-garbage", 35.5),  # CPU zones unreadable (garbage, -274000, no temp): the readable one
    ("sys-no-zones", None),  # cooling devices only
])
def test_cpu_temperature_from_fixture_sysfs(tree, celsius):
    assert sensors.cpu_temperature(FIX / tree) == celsius


def test_cpu_temperature_without_sysfs_or_with_unreadable_zones(tmp_path):
    assert sensors.cpu_temperature(tmp_path) is None  # no /sys/class/thermal at all
    zone = tmp_path / "class" / "thermal" / "thermal_zone0"
    (zone / "temp").mkdir(parents=True)  # reading it raises IsADirectoryError, an OSError
    (zone / "type").write_bytes(b"\xff\xfe")
    assert sensors.cpu_temperature(tmp_path) is None
    (tmp_path / "class" / "thermal" / "thermal_zone1").mkdir()
    (tmp_path / "class" / "thermal" / "thermal_zone1" / "temp").write_bytes(b"\x00\xff41000")
    assert sensors.cpu_temperature(tmp_path) is None


# -- events -------------------------------------------------------------------------------------------
@pytest.fixture
def wired():
    """Metrics subscribed to a real EventLog, on fixture roots and an injected clock."""
    clock = Clock()
    metrics = Metrics(proc_root=PROC, sys_root=FIX / "sys-cpu-zone", clock=clock)
    events = EventLog()
    events.subscribe(metrics.on_event)
    return metrics, events, clock


def test_counters_and_latency_histograms_from_events(wired):
    m, events, _ = wired
    events.emit("wake", t=1.2, score=0.93, model="hey_jarvis")
    events.emit("wake", t=9.0, score=0.71, model="hey_jarvis")
    events.emit("transcript", final=True, text="what time is it", raw="jarvis what time is it", t=3.1)
    events.emit("utterance", t=3.1, transcript="what time is it", reply="Noon.", mode="fast",
                latency=latency(endpoint_delay=0.4, endpoint_to_transcript=0.06, llm_first_token=0.2,
                                llm_first_clause=0.37, tts_first_audio=0.13, speech_end_to_first_audio=0.96))
    events.emit("utterance", t=12.0, transcript="and the date", reply="", mode="realtime",
                latency={**latency(endpoint_delay=0.4, endpoint_to_transcript=0.05), "speculative": True})
    events.emit("error", stage="llm", message="WorkerDied: llm worker: exited")
    events.emit("error", stage="llm", message="again")
    events.emit("error", stage="tts", message="no audio")

    assert sample(m, "harken_wake_detections_total") == 2
    assert sample(m, "harken_utterances_total") == 2
    assert sample(m, "harken_errors_total", stage="llm") == 2
    assert sample(m, "harken_errors_total", stage="tts") == 1
    h = "harken_stage_latency_seconds"
    assert sample(m, h + "_count", stage="endpoint_delay") == 2
    assert sample(m, h + "_sum", stage="endpoint_delay") == pytest.approx(0.8)
    assert sample(m, h + "_count", stage="endpoint_to_transcript") == 2
    assert sample(m, h + "_sum", stage="endpoint_to_transcript") == pytest.approx(0.11)
    for stage in ("llm_first_token", "llm_first_clause", "tts_first_audio", "speech_end_to_first_audio"):
        assert sample(m, h + "_count", stage=stage) == 1  # None means the stage did not happen
    assert sample(m, h + "_count", stage="speculative") is None  # a flag, not a stage
    assert sample(m, h + "_bucket", stage="speech_end_to_first_audio", le="0.75") == 0
    assert sample(m, h + "_bucket", stage="speech_end_to_first_audio", le="1.0") == 1

    m.command("restart", "ok")
    m.command("restart", "ok")
    m.command("say", "refused")
    m.mqtt_dropped(3)
    m.mqtt_dropped()
    assert sample(m, "harken_commands_total", command="restart", outcome="ok") == 2
    assert sample(m, "harken_commands_total", command="say", outcome="refused") == 1
    assert sample(m, "harken_events_dropped_total") == 4
    with pytest.raises(ValueError):
        m.mqtt_dropped(-1)


def current_states(m: Metrics, role: str) -> list[str]:
    return [s for s in WORKER_STATES if sample(m, "harken_worker_state", role=role, state=s) == 1]


def test_worker_state_gauges_and_restarts_follow_the_real_state_machine(wired):
    m, events, clock = wired
    pid = {"asr": 4242}
    health = Health("asr", Policy(backoff_initial=0.5, max_failures=3, failure_window=60.0), clock=clock,
                    on_change=lambda h, before, after, reason: events.emit(
                        "worker", role=h.role, state=after.value, reason=reason, pid=pid["asr"]))
    health.fire("start")
    assert current_states(m, "asr") == ["starting"]
    health.fire("loaded")
    health.fire("probed")
    health.fire("request")
    assert current_states(m, "asr") == ["busy"]
    assert sample(m, "harken_worker_state", role="asr", state="ready") == 0
    assert sample(m, "harken_worker_restarts_total", role="asr") is None  # the first start is no restart

    health.fire("failed", "killed by SIGKILL; closed its pipe")
    assert current_states(m, "asr") == ["backoff"]
    health.fire("retry")
    health.fire("failed", "hung")
    health.fire("retry")
    assert sample(m, "harken_worker_restarts_total", role="asr") == health.restarts == 2
    health.fire("failed", "hung")
    assert current_states(m, "asr") == ["fatal"]
    health.fire("start")  # the operator's restart
    health.fire("stop")
    health.fire("stopped")
    assert current_states(m, "asr") == ["stopped"]
    assert sample(m, "harken_worker_restarts_total", role="asr") == health.restarts == 3

    m.update([{"role": "asr", "state": "stopped", "pid": None, "model": "moonshine", "restarts": health.restarts}],
             None, None)
    assert sample(m, "harken_worker_restarts_total", role="asr") == 3  # nothing counted twice
    events.emit("worker", role="llm", state="sleeping", reason="", pid=1)  # not a state: ignored
    assert current_states(m, "llm") == []


def test_restarts_of_a_late_subscriber_catch_up_with_the_supervisor(wired):
    m, events, _ = wired
    m.update([{"role": "tts", "state": "ready", "pid": 4242, "model": "joe", "restarts": 3}], None, None)
    assert sample(m, "harken_worker_restarts_total", role="tts") == 3
    events.emit("worker", role="tts", state="backoff", reason="killed", pid=4242, retry_in=0.5)
    events.emit("worker", role="tts", state="starting", reason="", pid=None)
    assert sample(m, "harken_worker_restarts_total", role="tts") == 4
    m.update([{"role": "tts", "state": "starting", "pid": None, "model": "joe", "restarts": 4}], None, None)
    assert sample(m, "harken_worker_restarts_total", role="tts") == 4


def test_update_reads_rss_temperature_audio_and_mqtt(wired):
    m, events, _ = wired
    workers = [{"role": "llm", "state": "ready", "pid": 4242, "model": "qwen", "restarts": 0},
               {"role": "wake", "state": "busy", "pid": 4243, "model": "hey_jarvis", "restarts": 0},  # zombie
               {"role": "asr", "state": "backoff", "pid": None, "model": "moonshine", "restarts": 1}]
    m.update(workers, {"device": "default", "state": "ok", "reopens": 2, "frames": 100}, True)
    assert sample(m, "harken_worker_rss_bytes", role="llm") == 897536 * 1024
    assert sample(m, "harken_worker_rss_bytes", role="wake") is None
    assert sample(m, "harken_worker_rss_bytes", role="asr") is None
    assert current_states(m, "wake") == ["busy"] and current_states(m, "asr") == ["backoff"]
    assert sample(m, "harken_cpu_temperature_celsius") == 48.312
    assert sample(m, "harken_audio_ok") == 1 and sample(m, "harken_audio_reopens") == 2
    assert sample(m, "harken_mqtt_connected") == 1

    events.emit("audio", state="deaf", reason="no frames for 2 s", device="default")
    assert sample(m, "harken_audio_ok") == 0
    events.emit("audio", state="ok", reason="capturing again", device="default")
    assert sample(m, "harken_audio_ok") == 1

    workers[0]["pid"] = None  # the llm worker died
    m.update(workers, None, False)
    assert sample(m, "harken_worker_rss_bytes", role="llm") is None  # absent, not a stale figure
    assert sample(m, "harken_audio_ok") is None and sample(m, "harken_audio_reopens") is None
    assert sample(m, "harken_mqtt_connected") == 0
    m.update(workers, None, None)
    assert sample(m, "harken_mqtt_connected") is None


def test_uptime_follows_the_injected_clock(wired):
    m, _, clock = wired
    assert sample(m, "harken_uptime_seconds") == 0
    clock.now += 12.5
    assert sample(m, "harken_uptime_seconds") == 12.5


# -- snapshot and exposition --------------------------------------------------------------------------
def test_snapshot_agrees_with_the_parsed_exposition(wired):
    m, events, clock = wired
    assert mismatches(m.snapshot(), m.exposition()) == []  # fresh: empty labelled families, no optional gauges
    events.emit("wake", t=1.0, score=0.9, model="hey_jarvis")
    events.emit("utterance", t=2.0, transcript="hi", reply="Hello.", mode="fast",
                latency=latency(endpoint_delay=0.4, endpoint_to_transcript=0.0601, llm_first_token=0.1 + 0.2,
                                speech_end_to_first_audio=12.5))
    events.emit("error", stage="asr", message="x")
    events.emit("worker", role="asr", state="starting", reason="", pid=4242)
    events.emit("worker", role="asr", state="starting", reason="", pid=4242)
    m.command("swap", "failed")
    m.mqtt_dropped(2)
    m.update([{"role": "asr", "state": "ready", "pid": 4242, "model": "m", "restarts": 1}],
             {"device": "hw:1", "state": "reopening", "reopens": 1}, False)
    clock.now += 3.25

    snap = m.snapshot()
    text = m.exposition()
    assert mismatches(snap, text) == []
    assert b"_created" not in text
    assert snap["harken_wake_detections_total"] == 1 and isinstance(snap["harken_wake_detections_total"], int)
    assert snap["harken_errors_total"] == {"asr": 1}
    assert snap["harken_commands_total"] == {"swap": {"failed": 1}}
    assert snap["harken_worker_restarts_total"] == {"asr": 1}
    assert snap["harken_stage_latency_seconds"]["llm_first_token"] == {"count": 1, "sum": 0.1 + 0.2}
    assert snap["harken_worker_state"]["asr"]["ready"] == 1
    assert snap["harken_worker_rss_bytes"] == {"asr": 897536 * 1024}
    assert snap["harken_cpu_temperature_celsius"] == 48.312
    assert snap["harken_uptime_seconds"] == 3.25
    assert (snap["harken_audio_ok"], snap["harken_audio_reopens"], snap["harken_mqtt_connected"]) == (0, 1, 0)
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap

    # the comparison catches a changed number, a missing family and an extra series
    assert mismatches({**snap, "harken_utterances_total": 2}, text)
    assert mismatches({k: v for k, v in snap.items() if k != "harken_mqtt_connected"}, text)
    assert mismatches({**snap, "harken_errors_total": {"asr": 1, "llm": 0}}, text)


def test_the_registry_is_its_own():
    a, b = Metrics(), Metrics()  # a second one would clash in a shared registry
    a.on_event({"type": "wake", "t": 0.5, "score": 0.8, "model": "m", "ts": 0.0})
    assert a.registry is not REGISTRY
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("harken_")]
    assert b.registry.get_sample_value("harken_wake_detections_total") == 0


# -- exporter -----------------------------------------------------------------------------------------
def scrape(port: int, query: str = "") -> tuple[str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=HTTP_TIMEOUT) as response:
        return response.headers["Content-Type"], response.read()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def test_exporter_serves_metrics_over_http_and_close_frees_the_port(wired):
    m, events, _ = wired
    events.emit("wake", t=1.0, score=0.9, model="hey_jarvis")
    exporter = Exporter(m, "127.0.0.1", 0)  # port 0: the kernel picks a free one
    assert exporter.start()
    try:
        port = exporter.bound_port
        assert port
        kind, body = scrape(port)
        assert kind.startswith("text/plain")
        assert mismatches(m.snapshot(), body) == []
        assert m.snapshot()["harken_wake_detections_total"] == 1
        events.emit("wake", t=2.0, score=0.9, model="hey_jarvis")
        assert b"harken_wake_detections_total 2.0" in scrape(port)[1]
        one = scrape(port, "?name[]=harken_wake_detections_total&name[]=harken_wake_detections_created")[1]
        assert [f.name for f in text_string_to_metric_families(one.decode())] == ["harken_wake_detections"]
        assert b"_created" not in one
    finally:
        exporter.close()
    assert exporter.bound_port is None
    assert refused(port)
    exporter.close()  # twice is harmless

    again = Exporter(m, "127.0.0.1", port)  # the same port, at once
    assert again.start()
    try:
        assert b"harken_wake_detections_total 2.0" in scrape(port)[1]
    finally:
        again.close()
    assert refused(port)


def test_exporter_on_a_taken_port_returns_false_and_warns(wired, caplog):
    m, _, _ = wired
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = Exporter(m, "127.0.0.1", port)
        with caplog.at_level(logging.WARNING, logger="harken.telemetry.metrics"):
            assert exporter.start() is False
        assert f"127.0.0.1:{port}" in caplog.text
        assert exporter.bound_port is None
        exporter.close()


def test_root_read_only_from_mountinfo() -> None:
    """The SD image mounts / read-only with data overlays; a root remounted rw counts by its top mount."""
    assert sensors.root_read_only(FIX / "proc-image") is True
    assert sensors.root_read_only(FIX / "proc-rw") is False
    assert sensors.root_read_only(FIX / "proc-missing") is None
