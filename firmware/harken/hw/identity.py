"""Who this device is on the fleet when its configuration does not say.

A device id is part of every MQTT topic and of the broker client id, so two
devices must never share one. Hostnames do: every card flashed from one image
starts as the same host. ``/etc/machine-id`` is made anew on each machine's
first boot, so the default id is derived from it — hashed with a label of our
own, because the machine id itself should not leave the machine.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from pathlib import Path
from typing import Callable

_LOGGER = logging.getLogger(__name__)

MACHINE_ID = Path("/etc/machine-id")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def device_id(configured: str, machine_id: Path = MACHINE_ID, hostname: Callable[[], str] = socket.gethostname) -> str:
    """``configured`` if set; else ``harken-`` and 10 hex digits of a hash of the machine id; else the hostname."""
    if configured:
        return configured
    try:
        text = machine_id.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    if _MACHINE_ID.fullmatch(text):
        return "harken-" + hashlib.sha256(b"harken device id:" + text.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", hostname().split(".")[0])[:64] or "harken"
    _LOGGER.warning("%s is missing or not a machine id; using the hostname %r as the device id: "
                    "set [device] id so that no two devices share one", machine_id, name)
    return name
