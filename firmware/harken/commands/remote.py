"""``harken status``, ``listen``, ``mute`` and ``unmute``: questions and orders to a running harken, over its control socket."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harken import config
from harken.commands.common import EXIT_FAILURE, EXIT_OK, add_control, control_path


def register(sub: Any) -> None:
    st = sub.add_parser("status", help="show a running harken's workers and audio health",
                        description="Ask a running `harken run` (through its control socket) for the state of every "
                        "worker (state, pid, model, restarts, last reason) and of the microphone.")
    add_control(st)
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(handler=cmd_status)

    for name, text, desc, handler in (
        ("listen", "start listening now, without the wake word (or stop an answer)",
         "Push-to-talk from the command line: the running harken listens for a question as if its wake word had been "
         "said (its button does the same). While it is thinking or speaking, this stops it instead.", cmd_listen),
        ("mute", "stop listening for the wake word (the button's long press does the same)",
         "Mute the running harken: it ignores its wake word and push-to-talk until unmuted. The status light shows it.", cmd_mute),
        ("unmute", "listen for the wake word again", "Unmute the running harken.", cmd_mute),
    ):
        part = sub.add_parser(name, help=text, description=desc)
        add_control(part)
        part.set_defaults(handler=handler)


LISTEN_OUTCOMES = {
    "listening": "listening: ask your question",
    "stopped": "stopped the answer",
    "already_listening": "already listening",
    "muted": "not listening: the device is muted (harken unmute)",
    "refused": "not listening: the device is too hot and refuses questions until it cools",
    "starting": "not listening yet: the device is still starting",
    "deaf": "not listening: the wake word worker, which also finds the end of speech, has been given up (harken status)",
}


def cmd_listen(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import query

    outcome = query(control_path(args), "listen")["outcome"]
    print(LISTEN_OUTCOMES.get(outcome, outcome))
    return EXIT_OK if outcome in ("listening", "stopped", "already_listening") else EXIT_FAILURE


def cmd_mute(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import query

    answer = query(control_path(args), "mute", on=args.command == "mute")
    print("muted: the wake word is ignored" if answer["muted"] else "unmuted: listening for the wake word")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import query

    answer = query(control_path(args), "status")
    answer.pop("ok", None)
    if args.json:
        print(json.dumps(answer, indent=2))
        return EXIT_OK
    print(f"harken {answer['version']} (pid {answer['pid']}), up {answer['uptime_s']:.0f} s: {answer['summary']}")
    print(f"conversation: {answer['conversation'] or '-'}; audio lost while the wake worker was down: {answer['lost_audio_s']:.1f} s")
    rows = [("ROLE", "STATE", "PID", "MODEL", "RESTARTS", "FOR", "LAST REASON")]
    for w in answer["workers"]:
        rows.append((w["role"], w["state"] + (f" (retry in {w['retry_in_s']:.0f} s)" if w.get("retry_in_s") else ""),
                     str(w["pid"] or "-"), str(w["model"] or "-"), str(w["restarts"]), f"{w['since_s']:.0f} s", w["reason"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(n) for c, n in zip(r, widths)) + "  " + r[-1])
    audio = answer["audio"]
    details = ", ".join(f"{k} {v}" for k, v in audio.items() if k not in ("device", "state", "reason") and v is not None)
    print(f"audio: {audio.get('device')} {audio.get('state')}" + (f" ({audio['reason']})" if audio.get("reason") else "")
          + (f"; {details}" if details else ""))
    echo = answer.get("echo")
    if echo:
        echo_path = f"; echo path {echo['echo_path_ms']} ms" if echo["echo_path_ms"] is not None else ""
        erle = f", {echo['erle_db']:g} dB of it removed lately" if echo["erle_db"] is not None else ""
        problem = f"; {echo['problem']}" if echo["problem"] else ""
        print(f"echo cancellation: tail {echo['tail_ms']} ms after a delay of {echo['delay_ms']} ms{echo_path}{erle}{problem}")
    for slot in answer.get("models") or []:
        extra = []
        if slot.get("standby"):
            extra.append(f"warm standby {slot['standby']['model']} ({slot['standby']['state']})")
        if slot.get("baking_s"):
            extra.append(f"rolls back by itself if it fails in the next {slot['baking_s']:.0f} s")
        last = slot.get("last") or {}
        if last.get("action") in ("rollback", "failover"):
            extra.append(f"last {last['action']}: {last.get('reason', '')}")
        if extra:
            print(f"model {slot['role']}: {slot['model']}; " + "; ".join(extra))
    t = answer.get("threads")
    if t:
        print(f"threads ({t['cores']} cores): wake {t['wake']}, vad {t['vad']}, asr {t['asr']}, llm {t['llm']} "
              f"(prompt {t['llm_batch']}), tts {t['tts']}; spinning {'on' if t['spin'] else 'off'}")
    board, heat, panel = answer.get("board"), answer.get("thermal"), answer.get("panel")
    if board:
        print(f"board: {board['profile']} ({board['model']}); `harken board` says why")
    if heat:
        celsius = "no sensor" if heat["celsius"] is None else f"{heat['celsius']:.1f} °C"
        print(f"thermal: {heat['level']} at {celsius} (hot from {heat['hot']:g} °C, refusing from {heat['critical']:g} °C)")
    if panel:
        parts = [f"button {panel['button']}" + (" (STUCK: ignored until released)" if panel["stuck"] else "")] \
            if panel["button"] else []
        if panel["light"]:
            parts.append(f"light {panel['light']} ({panel['light_kind']}) showing {panel['showing']}")
        print("panel: " + ("; ".join(parts) or "nothing usable") + "".join(f"; {p}" for p in panel["problems"]))
    for t in answer.get("timers") or []:
        state = "RINGING" if t.get("ringing") else "paused" if t["paused"] else "running"
        print(f"timer {t['id']}: {t['label']}, {state}, {t['left']:.0f} s left")
    for t in answer.get("ringing") or []:
        if not any(x["id"] == t["id"] for x in answer.get("timers") or []):
            print(f"timer {t['id']}: {t['name'] or 'unnamed'} {t['seconds']:.0f} s timer is done and RINGING (press the button or say stop)")
    volume = answer.get("volume")
    if volume:
        print(f"volume: {volume['level']}%{' (muted)' if volume['muted'] else ''} ({volume['mixer']})"
              + (f"; {volume['problem']}" if volume.get("problem") else ""))
    skills = answer.get("skills")
    if skills:
        off = f"; off: {', '.join(skills['disabled'])}" if skills["disabled"] else ""
        print(f"skills: {', '.join(skills['enabled']) or 'none'}{off}" + "".join(f"; {p}" for p in skills["problems"]))
    knowledge = answer.get("knowledge")
    if knowledge:
        names = ", ".join(f"{p['name']} ({p['passages']} passages)" for p in knowledge["packs"]) or "none"
        last = knowledge.get("last")
        said = f"; last: {last['kind']} from {last['pack']}" + (f" ({last['passage']['doc']} › {last['passage']['headings'].rpartition(' › ')[2]})"
                                                              if last.get("passage") else "") if last else ""
        print(f"knowledge packs: {names}{'' if knowledge['enabled'] else ' (OFF: [knowledge] enabled = false)'}{said}"
              + "".join(f"; {p}" for p in knowledge["problems"]))
    mqtt = answer.get("mqtt")
    if mqtt is not None:
        print(f"fleet: {answer.get('device')} {'connected' if mqtt['connected'] else 'NOT connected (reconnecting)'}; "
              f"{mqtt['buffered']} events waiting, {mqtt['dropped']} dropped")
    return EXIT_OK
