"""Metrics from real events, sensors on fixture trees and the real /proc, and the exporter over real HTTP.

Fixture trees live in ``tests/fixtures/metrics``: ``proc/4242`` (a worker, comm with
spaces and parentheses), ``proc/4243`` (a zombie: no VmRSS), and sysfs trees
``sys-cpu-zone``, ``sys-jetson``, ``sys-two-zones``, ``sys-garbage``, ``sys-no-zones``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harken.hw import sensors
from harken.telemetry.metrics import Metrics
from support.paths import FIXTURES

FIX = FIXTURES / "metrics"
HTTP_TIMEOUT = 5.0


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_rss_of_a_real_child_as_zombie_and_after_reaping():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:  # exited, not reaped
        assert time.monotonic() < deadline, "child did not exit"
        time.sleep(0.01)
    assert (Path("/proc") / str(child.pid)).exists()  # a zombie
    assert sensors.rss_bytes(child.pid) is None
    child.wait(timeout=HTTP_TIMEOUT)
    assert sensors.rss_bytes(child.pid) is None
    assert sensors.cpu_seconds(child.pid) is None


def test_rss_of_a_real_worker_process_and_absent_once_it_is_gone():
    m = Metrics(sys_root=FIX / "sys-no-zones")
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = b'x' * (40 << 20); print('up', flush=True); "
                              "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        m.update([{"role": "llm", "state": "ready", "pid": child.pid, "model": "x", "restarts": 0}], None, None)
        assert sample(m, "harken_worker_rss_bytes", role="llm") >= 40 << 20
    finally:
        child.kill()
        child.wait(timeout=HTTP_TIMEOUT)
        child.stdin.close()
        child.stdout.close()
    m.update([{"role": "llm", "state": "backoff", "pid": child.pid, "model": "x", "restarts": 0}], None, None)
    assert sample(m, "harken_worker_rss_bytes", role="llm") is None
    assert sample(m, "harken_cpu_temperature_celsius") is None  # no sensor: absent, not NaN
    assert "harken_cpu_temperature_celsius" not in m.snapshot()
    assert b"harken_cpu_temperature_celsius" not in m.exposition()
