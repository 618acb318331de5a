"""The SD image, built and booted: `tools/build-image --board qemu-amd64` (cached between runs), seeded the
way a user prepares a card (cloud-init NoCloud files and harken.toml written into the FAT boot partition
with mtools, no mount), then booted twice under QEMU (TCG, no KVM) with its network restricted to one
forwarded port: 10.0.2.100:8883 in the guest reaches the TLS listener of a mosquitto on the host's
127.0.0.1. The device must provision itself, join the fleet and answer signed commands; a second boot
with a broken harken.toml must report the problem on the card and to the fleet.

Needs root (the image build uses chroot and mounts) and qemu-system-x86_64; `make test` installs the
tools. Where either is missing the tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harken.fleet.operator import FleetClient
from harken.fleet.signing import generate_keypair, load_private_key
from support.broker import Mosquitto, Subscriber
from support.paths import REPO

QEMU = shutil.which("qemu-system-x86_64")
BUILD_TIMEOUT = 45 * 60  # a cold build (mmdebstrap, wheels) is 3-6 minutes here; llama.cpp's wheel is built once by make
BOOT_TIMEOUT = 15 * 60  # boot, first-boot provisioning and Harken's start under TCG: 2-4 minutes here
CARD_EXTRA = 1 << 30  # the card is 1 GiB bigger than the image
DEVICE = "sd-test-1"
GUEST_BROKER = "10.0.2.100"

pytestmark = [
    pytest.mark.timeout(BUILD_TIMEOUT + 2 * BOOT_TIMEOUT),  # the first test also builds the image (module fixture)
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed (make test-deps installs qemu-system-x86)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building the image needs root (chroot, mounts): run make test as root"),
]


def build_image(out: Path) -> Path:
    """`tools/build-image --board qemu-amd64 --no-compress --check`; its progress goes to a log shown on failure."""
    log = out / "build.log"
    with log.open("w") as fh:
        # --check: the image's own harken answers the demo question inside its rootfs (natively here), which proves
        # its engines work; under QEMU without KVM the same models take minutes to load and miss their deadlines.
        done = subprocess.run([sys.executable, str(REPO / "tools" / "build-image"), "--board", "qemu-amd64", "--no-compress",
                               "--check", "--out", str(out)], stdout=fh, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
    text = log.read_text()
    if done.returncode != 0:
        pytest.fail(f"build-image failed (exit {done.returncode}):\n{text[-4000:]}")
    print(text)
    return next(out.glob("harken-*-qemu-amd64.img"))


class Card:
    """The image file as an SD card: files go into and out of its FAT boot partition through mtools."""

    def __init__(self, path: Path) -> None:
        self.path = path
        table = json.loads(subprocess.run(["sfdisk", "-J", str(path)], capture_output=True, text=True, check=True).stdout)
        boot = table["partitiontable"]["partitions"][0]
        self.target = f"{path}@@{boot['start'] * 512}"
        self.env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

    def write(self, name: str, text: str) -> None:
        src = self.path.parent / f"card-{name}"
        src.write_text(text)
        subprocess.run(["mcopy", "-o", "-i", self.target, str(src), f"::/{name}"], env=self.env, check=True, timeout=30)

    def read(self, name: str) -> str | None:
        done = subprocess.run(["mtype", "-i", self.target, f"::/{name}"], env=self.env, capture_output=True, timeout=30)
        return done.stdout.decode() if done.returncode == 0 else None


class Guest:
    """One boot of the card under QEMU: serial console to a file, powered down through the monitor."""

    def __init__(self, card: Card, broker: Mosquitto, workdir: Path, name: str) -> None:
        self.serial = workdir / f"serial-{name}.log"
        self.monitor = workdir / f"monitor-{name}.sock"
        cmd = [QEMU, "-accel", "tcg,thread=multi", "-machine", "pc", "-cpu", "max", "-smp", "2", "-m", "2048",
               "-display", "none", "-no-reboot", "-serial", f"file:{self.serial}",
               "-monitor", f"unix:{self.monitor},server,nowait",
               "-drive", f"file={card.path},format=raw,if=virtio",
               "-netdev", f"user,id=n0,restrict=on,guestfwd=tcp:{GUEST_BROKER}:8883-cmd:nc 127.0.0.1 {broker.tls_port}",
               "-device", "virtio-net-pci,netdev=n0"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def console(self, last: int = 60) -> str:
        try:
            lines = self.serial.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no serial output)"
        return "\n".join(lines[-last:])

    def power_down(self, timeout: float = 45.0) -> None:
        """ACPI power button (systemd shuts down cleanly); cut off, as by a power cut, if it is not off within
        ``timeout`` (a device still loading its models can take longer; the next boot must cope either way)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(5)
                    sock.connect(str(self.monitor))
                    sock.sendall(b"system_powerdown\n")
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=30)
        print(f"  powered down in {time.monotonic() - start:.0f} s (QEMU exit {self.proc.returncode})")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("operator")
    key, pub = generate_keypair(out)
    return {"signer": load_private_key(key), "pub": pub.read_text().strip()}


@pytest.fixture(scope="module")
def rig(tmp_path_factory, keys):
    """The built image copied to a card, a broker of its own, and the card seeded for the first boot."""
    work = tmp_path_factory.mktemp("image")
    image = build_image(work)
    start = time.monotonic()
    subprocess.run(["cp", "--sparse=always", str(image), str(work / "card.img")], check=True, timeout=300)
    with (work / "card.img").open("r+b") as fh:  # a card bigger than the image: data grows into the rest
        fh.truncate(fh.seek(0, 2) + CARD_EXTRA)
    print(f"card copied in {time.monotonic() - start:.0f} s")
    image.unlink()
    card = Card(work / "card.img")
    with Mosquitto(work / "broker") as broker:
        card.write("fleet-ca.pem", broker.ca_file.read_text())
        card.write("meta-data", "instance-id: sd-test-0001\n")
        card.write("user-data", "#cloud-config\nhostname: kitchen-speaker\n")
        card.write("harken.toml", f"""# written by test_image.py, as a user would
[device]
id = "{DEVICE}"
name = "Test kitchen"
groups = ["kitchen", "sd-tests"]

[mqtt]
url = "mqtts://{GUEST_BROKER}:8883"
username = "{broker.username}"
password = "{broker.password}"
ca_file = "fleet-ca.pem"
metrics_interval = 5.0

[fleet]
trusted_keys = ["{keys['pub']}"]
max_age = 120.0

[workers]
# QEMU without KVM runs this image some ten times slower than a Raspberry Pi 4
start_timeout = 600.0
wake_deadline = 30.0
asr_deadline = 60.0
llm_deadline = 60.0
tts_deadline = 60.0
""")
        yield {"card": card, "broker": broker, "work": work}
    card.path.unlink()  # gigabytes; the serial logs stay for a look after a failure


def wait_state(sub: Subscriber, guest: Guest, predicate, what: str) -> dict:  # type: ignore[no-untyped-def]
    """The newest retained state once ``predicate(state)`` holds; on timeout, fail with the guest's console."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        states = [json.loads(m.payload) for m in sub.messages if m.topic == f"harken/{DEVICE}/state"]
        if states and predicate(states[-1]):
            return states[-1]
        if guest.proc.poll() is not None:
            pytest.fail(f"QEMU exited ({guest.proc.returncode}) before {what}; console:\n{guest.console()}")
        time.sleep(1)
    pytest.fail(f"no {what} within {BOOT_TIMEOUT} s; last state: {states[-1] if states else None}\n"
                f"console:\n{guest.console()}")


def operator(broker: Mosquitto) -> FleetClient:
    return FleetClient(broker.tls_url, timeout=60.0, username=broker.username, password=broker.password,
                       ca_file=str(broker.ca_file))


def test_first_boot_provisions_the_device_and_joins_the_fleet(rig, keys) -> None:
    card, broker = rig["card"], rig["broker"]
    with Subscriber(broker, [f"harken/{DEVICE}/#"], tls=True) as sub:
        guest = Guest(card, broker, rig["work"], "first")
        try:
            state = wait_state(sub, guest, lambda s: s["device"] == DEVICE, "state from the device")
            online = round(time.monotonic() - guest.started)
            status = [m.payload for m in sub.messages if m.topic == f"harken/{DEVICE}/status"]
            assert status[-1] == b"online"
            assert state["name"] == "Test kitchen" and state["groups"] == ["kitchen", "sd-tests"]
            assert state["config_problems"] == []
            assert state["storage"]["root_read_only"] is True
            assert state["audio"]["state"] == "unavailable"  # no sound card in the VM: reported, and the device serves
            with operator(broker) as client:
                assert client.send(keys["signer"], "ping", {}, devices=[DEVICE])[DEVICE]["result"]["pong"] is True
                got = client.send(keys["signer"], "get_state", {}, devices=[DEVICE])[DEVICE]["result"]
                assert got["device"] == DEVICE and got["storage"]["root_read_only"] is True
                # the general knowledge pack was built into the image: the device answers from it from the first boot
                assert [(p["name"], p["declines"]) for p in got["knowledge"]["packs"]] == [("general", False)], got["knowledge"]
                assert got["knowledge"]["problems"] == []
                # the data partition (256 MiB in the image) grows to the end of the card at this first boot
                deadline = time.monotonic() + 300
                while got["storage"]["data_free_mb"] < 900 and time.monotonic() < deadline:
                    time.sleep(5)
                    got = client.send(keys["signer"], "get_state", {}, devices=[DEVICE])[DEVICE]["result"]
            assert got["storage"]["data_free_mb"] >= 900, got["storage"]
            print(f"first boot: QEMU start → state on MQTT in {online} s; signed ping and get_state answered "
                  f"{time.monotonic() - guest.started - online:.0f} s later")
        finally:
            guest.power_down()
    on_card = card.read("harken.toml")
    assert on_card is not None and broker.password not in on_card  # the secret left the card
    assert "moved into /etc/harken/harken.toml" in on_card and f'id = "{DEVICE}"' in on_card
    assert card.read("harken-errors.txt") is None


def test_a_broken_harken_toml_is_reported_on_the_card_and_to_the_fleet(rig, keys) -> None:
    card, broker = rig["card"], rig["broker"]
    edited = card.read("harken.toml")
    assert edited is not None, "the first boot's test left no harken.toml on the card"
    card.write("harken.toml", edited.replace("[fleet]", '[wake]\nmodel = "hey_computer"\n\n[fleet]'))
    with Subscriber(broker, [f"harken/{DEVICE}/#"], tls=True) as sub:
        guest = Guest(card, broker, rig["work"], "second")
        try:
            state = wait_state(sub, guest, lambda s: s["config_problems"], "the problem in state")
            print(f"second boot: QEMU start → the problem in state in {time.monotonic() - guest.started:.0f} s")
            assert any("hey_computer" in p for p in state["config_problems"])
            assert state["device"] == DEVICE  # the rest still applies: same id, same broker login
            with operator(broker) as client:
                assert client.send(keys["signer"], "ping", {}, devices=[DEVICE])[DEVICE]["result"]["pong"] is True
        finally:
            guest.power_down()
    errors = card.read("harken-errors.txt")
    assert errors is not None and "[wake] model = 'hey_computer'" in errors
