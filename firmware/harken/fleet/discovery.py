"""Home Assistant MQTT device discovery: one retained message describes the device and its entities.

Published on ``homeassistant/device/harken_<id>/config`` when the link connects
and again whenever Home Assistant announces ``online`` on ``homeassistant/status``.
Availability follows ``harken/<id>/status``. With ``[mqtt] ha_commands`` (off by
default) the device also offers a restart button and a text box whose text it
speaks; those two arrive unsigned on ``harken/<id>/ha/...``, are guarded only by
the broker's ACLs, and are rate-limited on the device. The "Last heard" sensor
exists only with ``[privacy] share_transcripts``. Timers: an event entity fed by
``harken/<id>/timer`` (one message per ``timer`` event, ``event_type`` = its action,
so an automation can flash the lights when a timer is done) and a sensor with the
number of timers set, running or paused (their list as attributes). A timer's name is
the person's own words: it leaves the device only with ``[privacy] share_transcripts``.
"""

from __future__ import annotations

from typing import Any

from harken.fleet import protocol

TIMER_ACTIONS = ("started", "cancelled", "paused", "resumed", "changed", "done", "stopped", "missed", "silenced")
"""The timer event entity's event types: the ``action`` of the device's ``timer`` events."""


def display_name(name: str, device_id: str) -> str:
    """The name people see: ``[device] name``, or 'Harken <id>' when none is set."""
    return name or f"Harken {device_id}"


def payload(device_id: str, version: str, board: str, ha_commands: bool, share_transcripts: bool = False,
            name: str = "") -> dict[str, Any]:
    state = protocol.topic(device_id, "state")
    uid = f"harken_{device_id}"
    components: dict[str, dict[str, Any]] = {
        f"{uid}_health": {"p": "sensor", "name": "Health", "unique_id": f"{uid}_health", "state_topic": state,
                          "value_template": "{{ value_json.health }}", "icon": "mdi:heart-pulse"},
        f"{uid}_uptime": {"p": "sensor", "name": "Uptime", "unique_id": f"{uid}_uptime", "state_topic": state,
                          "value_template": "{{ value_json.uptime_s }}", "unit_of_measurement": "s",
                          "device_class": "duration", "entity_category": "diagnostic"},
        f"{uid}_latency": {"p": "sensor", "name": "Answer latency", "unique_id": f"{uid}_latency", "state_topic": state,
                           "value_template": "{{ value_json.last_latency.speech_end_to_first_audio | default(none) }}",
                           "unit_of_measurement": "s", "device_class": "duration", "icon": "mdi:timer-outline"},
        f"{uid}_llm": {"p": "sensor", "name": "Language model", "unique_id": f"{uid}_llm", "state_topic": state,
                       "value_template": "{{ value_json.models.llm }}", "json_attributes_topic": state,
                       "json_attributes_template": "{{ (value_json.llm_choice or {}) | tojson }}", "icon": "mdi:brain",
                       "entity_category": "diagnostic"},
        f"{uid}_timer": {"p": "event", "name": "Timer", "unique_id": f"{uid}_timer", "state_topic": protocol.topic(device_id, "timer"),
                         "event_types": list(TIMER_ACTIONS), "icon": "mdi:timer-sand"},
        f"{uid}_timers": {"p": "sensor", "name": "Timers", "unique_id": f"{uid}_timers", "state_topic": state,
                          "value_template": "{{ value_json.timers | default([]) | length }}", "json_attributes_topic": state,
                          "json_attributes_template": "{{ {'timers': value_json.timers | default([])} | tojson }}", "icon": "mdi:timer-outline"},
    }
    if share_transcripts:  # what was said in the room is shown only if the operator opted in
        components[f"{uid}_heard"] = {"p": "sensor", "name": "Last heard", "unique_id": f"{uid}_heard", "state_topic": state,
                                      "value_template": "{{ value_json.last_heard | default('') }}", "icon": "mdi:ear-hearing"}
    if ha_commands:
        components[f"{uid}_restart"] = {"p": "button", "name": "Restart workers", "unique_id": f"{uid}_restart",
                                        "command_topic": protocol.topic(device_id, "ha/restart"), "payload_press": "PRESS",
                                        "device_class": "restart"}
        components[f"{uid}_say"] = {"p": "text", "name": "Say", "unique_id": f"{uid}_say", "max": 255,
                                    "command_topic": protocol.topic(device_id, "ha/say")}
    return {
        "dev": {"ids": [uid], "name": display_name(name, device_id), "mf": "Harken", "mdl": board, "sw": version},
        "o": {"name": "harken", "sw": version},
        "avty_t": protocol.topic(device_id, "status"),
        "pl_avail": "online",
        "pl_not_avail": "offline",
        "qos": 1,
        "cmps": components,
    }
