"""What the control socket's commands do (``supervisor/control.py`` carries them): each turns one
request into a call on the running device and checks the request's fields first, so a bad request
gets a clear error and changes nothing.

``fault`` is for the fault-injection tests only: it is refused unless harken was started with
HARKEN_FAULT_INJECTION=1.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from harken.audio.pcm import Audio
from harken.supervisor.control import Handler


class Controlled(Protocol):
    """The running device, as the control socket sees it (``harken.appliance.Appliance``)."""

    muted: bool
    pin_factory: Any

    async def status(self) -> dict[str, Any]: ...
    async def swap(self, role: str, model: str) -> dict[str, Any]: ...
    async def rollback(self, role: str) -> dict[str, Any]: ...
    async def ask(self, text: str, speak: bool = True) -> dict[str, Any]: ...
    async def render(self, text: str) -> tuple[Audio, str | None]: ...
    def speak(self, audio: Audio) -> None: ...
    def listen(self, by: str) -> str: ...
    def set_muted(self, muted: bool) -> None: ...


def handlers(device: Controlled) -> dict[str, Handler]:
    """The control socket's commands, by name."""

    async def status(_: dict[str, Any]) -> dict[str, Any]:
        return await device.status()

    async def swap(request: dict[str, Any]) -> dict[str, Any]:
        return await device.swap(str(request.get("role")), str(request.get("model")))

    async def rollback(request: dict[str, Any]) -> dict[str, Any]:
        return await device.rollback(str(request.get("role")))

    async def ask(request: dict[str, Any]) -> dict[str, Any]:
        return await device.ask(_text(request, "ask"), speak=bool(request.get("speak", True)))

    async def say(request: dict[str, Any]) -> dict[str, Any]:
        audio, model = await device.render(_text(request, "say"))
        if request.get("speak", True):
            device.speak(audio)
        return {"seconds": round(len(audio.pcm) / audio.rate, 3), "model": model}

    async def listen(_: dict[str, Any]) -> dict[str, Any]:
        return {"outcome": device.listen("control")}

    async def mute(request: dict[str, Any]) -> dict[str, Any]:
        on = request.get("on", True)
        if not isinstance(on, bool):
            raise ValueError("mute's 'on' must be true or false")
        device.set_muted(on)
        return {"muted": device.muted}

    async def fault(request: dict[str, Any]) -> dict[str, Any]:
        return inject_fault(device, request)

    return {"status": status, "fault": fault, "swap": swap, "rollback": rollback, "ask": ask, "say": say,
            "listen": listen, "mute": mute}


def _text(request: dict[str, Any], command: str) -> str:
    text = request.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{command} needs a 'text' string")
    return text


# -- fault injection (tests only) --------------------------------------------------------------
def inject_fault(device: Controlled, request: dict[str, Any]) -> dict[str, Any]:
    if os.environ.get("HARKEN_FAULT_INJECTION") != "1":
        raise ValueError("fault injection is off (set HARKEN_FAULT_INJECTION=1 in harken's environment to test faults)")
    if "pin" in request:
        return _mock_pin(device.pin_factory, str(request["pin"]), request.get("drive"))
    seconds = float(request.get("block_loop", 0))
    if not 0 < seconds <= 600:
        raise ValueError("block_loop must be between 0 and 600 seconds")
    time.sleep(seconds)  # deliberately blocks the loop: the watchdog pings must stop
    return {"blocked_s": seconds}


def _mock_pin(pin_factory: Any, name: str, drive: Any) -> dict[str, Any]:
    """Drive a mock GPIO input ('low'/'high': a finger on the button) or read a pin's history (the light)."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = pin_factory or Device.pin_factory
    if not isinstance(factory, MockFactory):
        raise ValueError("pins can be driven only with gpiozero's mock pin factory (GPIOZERO_PIN_FACTORY=mock)")
    pin = factory.pin(name)
    if drive in ("low", "high"):
        (pin.drive_low if drive == "low" else pin.drive_high)()
    elif drive is not None:
        raise ValueError("drive must be 'low' or 'high'")
    # MockPin keeps (seconds since the previous change, state): rebuild monotonic times back from the last change.
    at, history = pin._last_change, []
    for change in reversed(pin.states):
        history.append((round(at, 4), float(change.state)))
        at -= change.timestamp
    return {"pin": name, "state": float(pin.state), "history": history[::-1], "now": time.monotonic(), "wall": time.time()}
