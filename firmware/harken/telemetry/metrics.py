"""The device's Prometheus metrics, a JSON snapshot of them, and the ``/metrics`` exporter.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one) and learns
from two places:

- ``on_event``, subscribed to the ``EventLog``: ``wake``, ``utterance`` (stage
  latencies), ``error``, ``worker`` (state changes, restarts) and ``audio`` events;
- ``update``, called by the service every few seconds with
  ``Supervisor.describe()``, the capture device's ``health()`` and whether the MQTT
  link is up: worker states and memory, audio health, temperature.

Decisions worth knowing:

- A restart is a worker going to ``starting`` again after its first start (what
  the supervisor's ``restarts`` counts: after a failure, and explicit restarts).
  ``update`` tops the counter up to the supervisor's own count, so a ``Metrics``
  subscribed late still agrees with ``harken status``.
- "Nothing to measure" is an absent series, never 0 or NaN: no thermal sensor, no
  capture device (file input), no MQTT link configured, a worker without a live
  process (no RSS). ``absent(...)`` in PromQL finds them; NaN would not be JSON.
- No ``_created`` series: they are wall-clock times, not measurements.
- ``snapshot()`` is built from the same ``collect()`` as the exposition. Shape:
  one key per family (counters keep their ``_total`` name); a family without
  labels is a number; labels nest in label order (``{"llm": 1}``,
  ``{"restart": {"ok": 2}}``); a histogram is ``{"count", "sum"}`` per label set
  (buckets are left to Prometheus). Whole numbers are ints.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harken.events import EventType
from harken.hw import sensors

_LOGGER = logging.getLogger(__name__)

STAGES = ("endpoint_delay", "endpoint_to_transcript", "llm_first_token", "llm_first_clause",
          "tts_first_audio", "speech_end_to_first_audio")
"""The ``latency`` keys of ``utterance`` events that become histogram stages."""

WORKER_STATES = ("starting", "probing", "ready", "busy", "backoff", "fatal", "stopping", "stopped")

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds: fine where the figures live (≈ 0.1–1 s per stage), coarse up to 10 s."""

CLOSE_TIMEOUT = 5.0
"""Seconds ``Exporter.close`` waits for the server thread."""


def _without_created(families: Iterable[Metric]) -> Iterator[Metric]:
    for family in families:
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family


class _Restricted:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        return _without_created(self._inner.collect())


class _Registry(CollectorRegistry):
    """A registry without the ``_created`` series, also for ``/metrics?name[]=...``."""

    def collect(self) -> Iterator[Metric]:
        return _without_created(super().collect())

    def restricted_registry(self, names: Iterable[str]) -> Any:
        return _Restricted(super().restricted_registry(names))


class _OptionalGauges(Collector):
    """Unlabelled gauges that are absent while their value is None."""

    def __init__(self, docs: dict[str, str]) -> None:
        self._docs = docs
        self._values: dict[str, float | None] = dict.fromkeys(docs)

    def set(self, name: str, value: float | None) -> None:
        if name not in self._docs:
            raise KeyError(name)
        self._values[name] = value

    def describe(self) -> list[Metric]:  # the names, so that the registry can refuse duplicates
        return [GaugeMetricFamily(name, doc) for name, doc in self._docs.items()]

    def collect(self) -> Iterator[Metric]:
        for name, doc in self._docs.items():
            value = self._values[name]
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """The device's metrics; feed it with ``on_event`` and ``update``, read it with
    ``exposition`` and ``snapshot``. Thread-safe: the exporter reads from its own thread."""

    def __init__(self, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proc_root, self.sys_root, self.clock = proc_root, sys_root, clock
        self.registry: CollectorRegistry = _Registry()
        r = self.registry
        self._wakes = Counter("harken_wake_detections_total", "Wake words detected.", registry=r)
        self._utterances = Counter("harken_utterances_total", "Questions answered (utterance events).", registry=r)
        self._errors = Counter("harken_errors_total", "Error events, by stage (asr, llm, tts, pipeline, a role).",
                               ["stage"], registry=r)
        self._restarts = Counter("harken_worker_restarts_total",
                                 "Worker starts after its first one (after failures, and explicit restarts).",
                                 ["role"], registry=r)
        self._dropped = Counter("harken_events_dropped_total",
                                "Events the MQTT link dropped from its full buffer while the broker was away.",
                                registry=r)
        self._commands = Counter("harken_commands_total", "Fleet commands received, by command and outcome.",
                                 ["command", "outcome"], registry=r)
        self._latency = Histogram("harken_stage_latency_seconds", "Latency of each stage of an answer.",
                                  ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self._worker_state = Gauge("harken_worker_state", "1 for each worker's current state, 0 for the others.",
                                   ["role", "state"], registry=r)
        self._worker_rss = Gauge("harken_worker_rss_bytes", "Resident memory of each worker process.",
                                 ["role"], registry=r)
        self._uptime = Gauge("harken_uptime_seconds", "Seconds since the service started.", registry=r)
        self._board = Gauge("harken_board_info", "1, labelled with the board profile in use and the board's model.",
                            ["profile", "model"], registry=r)
        self._thermal = Gauge("harken_thermal_level", "1 for the thermal guard's current level, 0 for the others.",
                              ["level"], registry=r)
        self._buttons = Counter("harken_button_presses_total", "Button gestures, by gesture and what they did.",
                                ["gesture", "action"], registry=r)
        started = clock()
        self._uptime.set_function(lambda: self.clock() - started)
        self._optional = _OptionalGauges({
            "harken_audio_ok": "1 while the microphone delivers audio, 0 while deaf or reopening.",
            "harken_audio_reopens": "Times the capture device was reopened.",
            "harken_cpu_temperature_celsius": "CPU temperature (absent on boards without a sensor).",
            "harken_mqtt_connected": "1 while connected to the MQTT broker, 0 while not.",
        })
        r.register(self._optional)
        self._lock = threading.Lock()  # the restart bookkeeping below
        self._seen: set[str] = set()  # roles known to have started once
        self._restart_counts: dict[str, int] = {}
        self._rss_roles: set[str] = set()

    # -- events ------------------------------------------------------------------------------------
    def on_event(self, ev: dict[str, Any]) -> None:
        """Count an ``EventLog`` event; other types are ignored."""
        kind = ev.get("type")
        if kind == EventType.WAKE:
            self._wakes.inc()
        elif kind == EventType.UTTERANCE:
            self._utterances.inc()
            latency = ev.get("latency") or {}
            for stage in STAGES:
                value = latency.get(stage)
                # None: the stage did not happen; bool is an int, so rule it out explicitly
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._latency.labels(stage=stage).observe(value)
        elif kind == EventType.ERROR:
            self._errors.labels(stage=str(ev.get("stage") or "unknown")).inc()
        elif kind == EventType.WORKER:
            role, state = str(ev["role"]), str(ev["state"])
            with self._lock:
                if state == "starting" and role in self._seen:
                    self._count_restarts(role, 1)
                self._seen.add(role)
            self._set_state(role, state)
        elif kind == EventType.BUTTON:
            self._buttons.labels(gesture=str(ev.get("gesture")), action=str(ev.get("action"))).inc()
        elif kind == EventType.THERMAL:
            self.thermal(str(ev.get("level")))
        elif kind == EventType.AUDIO and ev.get("stream", "capture") == "capture":
            self._optional.set("harken_audio_ok", 1.0 if ev.get("state") == "ok" else 0.0)

    def board(self, profile: str, model: str) -> None:
        self._board.clear()
        self._board.labels(profile=profile, model=model).set(1.0)

    def thermal(self, level: str) -> None:
        for each in ("normal", "hot", "critical"):
            self._thermal.labels(level=each).set(1.0 if each == level else 0.0)

    def mqtt_dropped(self, n: int = 1) -> None:
        """The MQTT link dropped ``n`` more events (its buffer was full)."""
        self._dropped.inc(n)

    def command(self, name: str, outcome: str) -> None:
        """A fleet command arrived; ``outcome`` is a short word: ok, failed, refused, ..."""
        self._commands.labels(command=name, outcome=outcome).inc()

    def _count_restarts(self, role: str, n: int) -> None:
        self._restart_counts[role] = self._restart_counts.get(role, 0) + n
        self._restarts.labels(role=role).inc(n)

    def _set_state(self, role: str, state: str) -> None:
        if state not in WORKER_STATES:
            _LOGGER.warning("worker %s in unknown state %r; its state gauge is unchanged", role, state)
            return
        for s in WORKER_STATES:
            self._worker_state.labels(role=role, state=s).set(1.0 if s == state else 0.0)

    # -- periodic refresh ----------------------------------------------------------------------------
    def update(self, workers: list[dict[str, Any]], audio: dict[str, Any] | None,
               mqtt_connected: bool | None) -> None:
        """Refresh the gauges. ``workers``: ``Supervisor.describe()``; ``audio``: the capture
        device's ``health()``, None without one; ``mqtt_connected``: None without a link."""
        rss_roles: set[str] = set()
        for w in workers:
            role = str(w["role"])
            self._set_state(role, str(w["state"]))
            with self._lock:
                if w["state"] != "stopped":
                    self._seen.add(role)
                missing = int(w.get("restarts") or 0) - self._restart_counts.get(role, 0)
                if missing > 0:
                    self._count_restarts(role, missing)
            pid = w.get("pid")
            rss = sensors.rss_bytes(pid, self.proc_root) if pid else None
            if rss is not None:
                self._worker_rss.labels(role=role).set(rss)
                rss_roles.add(role)
        for role in self._rss_roles - rss_roles:  # no process now: absent, not a stale figure
            self._worker_rss.remove(role)
        self._rss_roles = rss_roles
        self._optional.set("harken_audio_ok", None if audio is None else float(audio.get("state") == "ok"))
        self._optional.set("harken_audio_reopens", None if audio is None else float(audio.get("reopens") or 0))
        self._optional.set("harken_mqtt_connected", None if mqtt_connected is None else float(mqtt_connected))
        self._optional.set("harken_cpu_temperature_celsius", sensors.cpu_temperature(self.sys_root))

    # -- output --------------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text format, as served on ``/metrics``."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The same numbers as a JSON-able dict (see the module docstring for its shape)."""
        return {(f.name + "_total" if f.type == "counter" else f.name): _family_tree(f)
                for f in self.registry.collect()}


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _family_tree(family: Metric) -> Any:
    tree: dict[str, Any] = {}
    for sample in family.samples:
        path = [v for k, v in sample.labels.items() if k != "le"]
        if family.type == "histogram":
            suffix = sample.name[len(family.name):]
            if suffix == "_bucket":
                continue
            path.append(suffix.lstrip("_"))  # "count" or "sum"
        if not path:
            return _number(sample.value)
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _number(sample.value)
    return tree


class Exporter:
    """Serves ``metrics`` on ``http://host:port/metrics`` from a daemon thread.

    Refreshing the gauges (``Metrics.update``) is the caller's job. ``port`` 0
    picks a free port; ``bound_port`` says which.
    """

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def bound_port(self) -> int | None:
        return None if self._server is None else int(self._server.server_port)

    def start(self) -> bool:
        """Listen; False (and a warning) if that is impossible: the device works on without it."""
        if self._server is not None:
            return True
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.metrics.registry)
        except OSError as exc:  # port taken, address not on this host, name unknown
            _LOGGER.warning("metrics: cannot serve on %s:%d (%s); /metrics is off", self.host, self.port, exc)
            return False
        _LOGGER.info("metrics: serving on http://%s:%d/metrics", self.host, self.bound_port)
        return True

    def close(self) -> None:
        """Stop serving and free the port (``server_close``; ``shutdown`` alone keeps it)."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(CLOSE_TIMEOUT)
            if thread.is_alive():
                _LOGGER.warning("metrics: server thread still running %.0f s after shutdown", CLOSE_TIMEOUT)
