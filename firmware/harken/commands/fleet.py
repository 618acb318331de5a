"""``harken fleet ...``: the operator's commands. Imports no engine (installs with the ``fleet`` extra)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from harken.commands.common import EXIT_FAILURE, EXIT_OK
from harken.fleet.operator import Device, FleetClient, FleetError


def register(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="manage devices over MQTT (operator side)",
                           description="See and command Harken devices through an MQTT broker. Commands are signed "
                           "with an operator key (`harken fleet keygen`); devices obey keys listed in [fleet] trusted_keys.")
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser, key: bool = False) -> None:
        p.add_argument("--broker", default=os.environ.get("HARKEN_BROKER", "mqtt://127.0.0.1:1883"),
                       help="broker URL (default $HARKEN_BROKER or mqtt://127.0.0.1:1883)")
        p.add_argument("--username", default=os.environ.get("HARKEN_BROKER_USER", ""), help="broker user (default $HARKEN_BROKER_USER)")
        p.add_argument("--password", default=os.environ.get("HARKEN_BROKER_PASSWORD", ""), help="broker password (default $HARKEN_BROKER_PASSWORD)")
        p.add_argument("--ca-file", default="", help="CA certificate for mqtts://")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker and for replies")
        p.add_argument("--json", action="store_true", help="print JSON")
        if key:
            p.add_argument("--key", required=True, metavar="FILE", help="operator private key (from `harken fleet keygen`)")

    kg = fsub.add_parser("keygen", help="make an operator key pair")
    kg.add_argument("--out", required=True, metavar="DIR", help="directory for operator.key (private, 0600) and operator.pub")
    ls = fsub.add_parser("ls", help="devices: online, version, models, health, last seen")
    common(ls)
    watch = fsub.add_parser("watch", help="the device table, live (Ctrl-C to stop)")
    common(watch)
    watch.add_argument("--seconds", type=float, default=None, help="stop after this long")
    met = fsub.add_parser("metrics", help="a device's metrics now (a signed get_metrics)")
    common(met, key=True)
    met.add_argument("device")
    send = fsub.add_parser("send", help="send a signed command to a device, several, or a group",
                           description="COMMAND is one of ping, get_state, get_metrics, get_logs, set_config, restart_worker, "
                           "install_model, swap_model, rollback_model, say, ask, mute, unmute, listen; arguments as key=value "
                           "(values are JSON where they parse, else text).")
    common(send, key=True)
    send.add_argument("--group", help="send to every device in this group instead")
    send.add_argument("--expect", type=int, help="with --group: stop waiting after this many replies (default: the group's known members)")
    send.add_argument("target", nargs="?", help="device id, or several separated by commas")
    send.add_argument("name", metavar="COMMAND")
    send.add_argument("args", nargs="*", metavar="key=value")

    fleet.set_defaults(handler=run, needs_settings=False)


def run(args: argparse.Namespace) -> int:
    try:
        return {"keygen": keygen, "ls": ls, "watch": watch, "metrics": metrics, "send": send}[args.fleet_command](args)
    except FleetError as exc:
        print(f"harken fleet: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _client(args: argparse.Namespace) -> FleetClient:
    return FleetClient(args.broker, args.username, args.password, args.ca_file, args.timeout)


def keygen(args: argparse.Namespace) -> int:
    from harken.fleet.signing import generate_keypair

    key, pub = generate_keypair(Path(args.out))
    print(f"private key: {key} (keep it secret; give it to `harken fleet send --key`)")
    print(f"public key : {pub}; add this line to [fleet] trusted_keys on each device:")
    print(f'  trusted_keys = ["{pub.read_text().strip()}"]')
    return EXIT_OK


def _row(d: Device) -> dict[str, Any]:
    s = d.state
    return {"device": d.id, "online": d.online, "version": s.get("version"), "models": s.get("models", {}),
            "health": s.get("health"), "last_seen": d.last_seen}


def _table(devices: dict[str, Device]) -> str:
    rows = [("DEVICE", "ONLINE", "VERSION", "HEALTH", "LAST SEEN", "MODELS")]
    now = time.time()
    for d in devices.values():
        r = _row(d)
        seen = "-" if r["last_seen"] is None else f"{max(0.0, now - r['last_seen']):.0f} s ago"
        models = ", ".join(f"{k}={v}" for k, v in (r["models"] or {}).items()) or "-"
        rows.append((d.id, {True: "yes", False: "NO", None: "?"}[d.online], str(r["version"] or "-"), str(r["health"] or "-"), seen, models))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        devices = client.list_devices()
    if args.json:
        print(json.dumps([_row(d) for d in devices.values()], indent=2))
    else:
        print(_table(devices) if devices else "no devices have reported to this broker")
    return EXIT_OK


def watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        end = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while end is None or time.monotonic() < end:
                devices = client.list_devices(settle=0.1)
                if args.json:
                    print(json.dumps([_row(d) for d in devices.values()]), flush=True)
                else:
                    print("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + f"{len(devices)} devices\n" + _table(devices), flush=True)
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def parse_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FleetError(f"argument {pair!r}: write it as key=value (e.g. text='hello there' or value=0.3)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _progress(got: int, wanted: int) -> None:
    if wanted > 1 and sys.stderr.isatty():
        width = 30
        done = int(width * got / wanted)
        print(f"\r[{'#' * done}{'.' * (width - done)}] {got}/{wanted} replies", end="", file=sys.stderr, flush=True)


def send(args: argparse.Namespace) -> int:
    from harken.fleet.signing import load_private_key

    if (args.group is None) == (args.target is None):
        raise FleetError("name a device (or several, comma-separated) or --group G, not both")
    signer = load_private_key(Path(args.key))
    cmd_args = parse_args(args.args)
    with _client(args) as client:
        devices = args.target.split(",") if args.target else None
        expect, members = args.expect, []
        if args.group is not None:
            members = [d.id for d in client.list_devices().values() if args.group in d.state.get("groups", []) and d.online]
            expect = len(members) if expect is None else expect
        replies = client.send(signer, args.name, cmd_args, devices=devices, group=args.group, expect=expect, progress=_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    missing = [d for d in (devices or members) if d not in replies]
    if args.json:
        print(json.dumps({"replies": replies, "missing": missing}, indent=2))
    else:
        for device, reply in sorted(replies.items()):
            if reply.get("ok"):
                print(f"{device}: ok {json.dumps(reply.get('result'), ensure_ascii=False)}")
            else:
                print(f"{device}: REFUSED ({reply.get('code')}): {reply.get('error')}")
        for device in missing:
            print(f"{device}: no reply within {args.timeout:g} s: it is offline, or does not trust this key "
                  "(a device answers nothing it cannot verify: check that operator.pub is in its [fleet] trusted_keys)")
    return EXIT_OK if replies and all(r.get("ok") for r in replies.values()) and not missing else EXIT_FAILURE


def metrics(args: argparse.Namespace) -> int:
    from harken.fleet.signing import load_private_key

    signer = load_private_key(Path(args.key))
    with _client(args) as client:
        replies = client.send(signer, "get_metrics", {}, devices=[args.device])
    reply = replies.get(args.device)
    if reply is None:
        raise FleetError(f"{args.device}: no reply within {args.timeout:g} s (offline, or not listening)")
    if not reply.get("ok"):
        raise FleetError(f"{args.device} refused ({reply.get('code')}): {reply.get('error')}")
    result = reply["result"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in sorted(result.items()):
            print(f"{name} {json.dumps(value)}")
    return EXIT_OK
