"""The MQTT broker's URL, as ``[mqtt] url`` and ``harken fleet --broker`` take it.

One parser for the configuration check, the device's link and the operator's client, so a
URL the configuration accepts is one the link can use. It sits below ``config.py`` (which
checks ``[mqtt] url`` with it) and imports nothing of Harken's.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; ValueError saying what is wrong otherwise.

    The device's link, the operator's client and the configuration check all use
    this one parser, so a URL the configuration accepts is one the link can use."""
    expected = "expected mqtt://host[:port] or mqtts://host[:port]"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ValueError(f"{url!r}: {exc}; {expected} with a port from 1 to 65535") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"{url!r}: {expected}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: no user or password in the URL; put them in [mqtt] username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a broker URL has no path, query or fragment; {expected}")
    if port == 0:
        raise ValueError(f"{url!r}: port 0 is not a port; {expected} with a port from 1 to 65535")
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if tls else 1883), tls
