"""systemd's unit files, as the tests read them."""

from __future__ import annotations

from support.paths import REPO

UNIT = REPO / "systemd" / "harken.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given, in order (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            raise ValueError(f"{UNIT}:{number}: not a key=value line inside a section: {line!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
