"""A running device's outward side: Prometheus metrics (and their exporter) and the MQTT link with its agent.

Neither may stop the device from working: an exporter that cannot bind and a broker that cannot be
reached are reported, and the device answers questions all the same. The link is made anew when a
fleet change moves the device to another broker, id or key (:meth:`Uplink.relink`), and the events
still waiting for the broker go over to the new link.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from harken.config import Settings
from harken.events import EventLog

METRICS_REFRESH = 5.0
"""Seconds between refreshes of the gauges (worker states, RSS, temperature) for /metrics."""


class Uplink:
    """Metrics, the exporter, the MQTT link and the agent that acts on ``device`` for the fleet."""

    def __init__(self, device: Any, events: EventLog, sys_root: Path, floor_path: Path) -> None:
        self.device = device
        """The running appliance, which the agent reads and acts on (see fleet/device.py)."""
        self.events = events
        self.sys_root = sys_root
        self.floor_path = floor_path
        """Where the newest signed command's ts is kept (replay protection across restarts)."""
        self.metrics: Any = None
        self.link: Any = None
        self.agent: Any = None
        self._dropped_counted = 0

    async def start(self, settings: Settings, device_id: str, tasks: list[asyncio.Task[None]]) -> None:
        from harken.telemetry.metrics import Exporter, Metrics

        self.metrics = Metrics(sys_root=self.sys_root)
        board = self.device.board
        self.metrics.board(board.profile.key, board.model)
        self.metrics.thermal(self.device.thermal.level.value)
        self.events.subscribe(self.metrics.on_event)
        listen = settings.metrics.listen
        if listen:
            host, _, port = listen.rpartition(":")
            exporter = Exporter(self.metrics, host.strip("[]"), int(port))
            if exporter.start():
                tasks.append(asyncio.get_running_loop().create_task(self._refresh_metrics(exporter), name="metrics-refresh"))
        if not settings.mqtt.url:
            return
        # Only with a broker: the agent and the link load cryptography (~8 MB resident) for signed commands.
        from harken.fleet.device import DeviceAgent, LogRing

        logs = LogRing()
        logging.getLogger().addHandler(logs)
        self.agent = DeviceAgent(self.device, self.metrics, logs)
        self.link = self._new_link(settings, device_id)
        self.events.subscribe(lambda event: self.link.publish_event(event) if self.link is not None else None)
        self.link.start()

    def _new_link(self, settings: Settings, device_id: str) -> Any:
        from harken.fleet.link import DeviceLink

        return DeviceLink(settings, device_id, self.agent, on_command=self.metrics.command, floor_path=self.floor_path)

    async def relink(self, settings: Settings, device_id: str) -> None:
        """Leave the broker and join it again as ``settings`` say (id, keys, broker, credentials: a fleet trial)."""
        old = self.link
        if old is not None:
            await old.close()
        if not settings.mqtt.url:
            self.link = None
            return
        link = self._new_link(settings, device_id)
        if old is not None:
            link.buffer, link.dropped = old.buffer, old.dropped  # events waiting for the broker are not lost
        self.link = link
        link.start()

    def publish_state(self) -> None:
        if self.link is not None:
            self.link.publish_state()

    def refresh_metrics(self) -> None:
        if self.metrics is None:
            return
        if self.link is not None and self.link.dropped > self._dropped_counted:
            self.metrics.mqtt_dropped(self.link.dropped - self._dropped_counted)
            self._dropped_counted = self.link.dropped
        self.metrics.update(self.device.sup.describe(), self.device.audio_health(),
                            None if self.link is None else self.link.connected)

    async def _refresh_metrics(self, exporter: Any) -> None:
        try:
            while True:
                self.refresh_metrics()
                await asyncio.sleep(METRICS_REFRESH)
        finally:
            exporter.close()

    async def close_agent(self) -> None:
        if self.agent is not None:
            await self.agent.close()  # no trial rollback or relink while stopping

    async def close_link(self) -> None:
        if self.link is not None:
            await self.link.close()
