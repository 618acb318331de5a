"""Board detection and profiles (hw/board.py), in process: committed fixture trees of real boards' files and trees
written here, the settings a profile fills in, and the providers and GPU layers chosen from the real onnxruntime
and llama.cpp installed here."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from harken import config
from harken.errors import ConfigError
from harken.hw import board
from support.paths import FIXTURES

BOARDS = FIXTURES / "boards"

EXPECTED = {
    # fixture: (profile, the file that decides, words of the reason, a machine the files must win over)
    "rpi3": ("rpi3", "/proc/device-tree/compatible", "raspberrypi,3-model-b-plus", "x86_64"),
    "rpi4": ("rpi4", "/proc/device-tree/compatible", "raspberrypi,4-model-b", "x86_64"),
    "rpi5": ("rpi5", "/proc/device-tree/compatible", "raspberrypi,5-model-b", "x86_64"),
    "rpi-zero2": ("rpi-zero2", "/proc/device-tree/compatible", "raspberrypi,model-zero-2-w", "x86_64"),
    "rpi4-cpuinfo-only": ("rpi4", "/proc/cpuinfo", "Revision c03112", "x86_64"),
    "jetson-orin-nano": ("jetson-orin-nano", "/proc/device-tree/compatible", "p3767-0005", "x86_64"),
    "jetson-orin-nx": ("jetson-orin-nx", "/proc/device-tree/compatible", "p3767-0000", "x86_64"),
    "jetson-agx-orin": ("jetson-agx-orin", "/proc/device-tree/compatible", "p3701-0000", "x86_64"),
    "x86-64": ("x86-64", "/proc/cpuinfo", "x86 CPU", "aarch64"),
    "arm64-generic": ("arm64", "/proc/cpuinfo", "Arm CPU", "x86_64"),
}


def settings(**sections) -> config.Settings:
    """Default settings with some sections' values replaced: settings(thermal={"hot": 70.0})."""
    s = config.Settings()
    return dataclasses.replace(s, **{name: dataclasses.replace(getattr(s, name), **values) for name, values in sections.items()})


def said(found: board.Board, start: str) -> str:
    """The reason that starts with ``start``."""
    matches = [r for r in found.reasons if r.startswith(start)]
    assert len(matches) == 1, found.reasons
    return matches[0]


def tree(tmp_path: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return tmp_path


def test_every_fixture_board_is_committed_and_expected():
    assert sorted(p.name for p in BOARDS.iterdir()) == sorted([*EXPECTED, "garbage"])
    assert tuple(board.PROFILES) == config.BOARD_PROFILES  # [board] profile is checked against config's list
    assert all(key == p.key for key, p in board.PROFILES.items())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_board_is_detected_with_the_file_that_decided(name):
    key, source, words, machine = EXPECTED[name]
    found = board.detect(BOARDS / name, machine=machine)
    assert found.profile.key == key, found.reasons
    assert words in said(found, source)
    assert not found.forced and found.memory_mb and found.memory_mb > 300
    assert found.cores == (BOARDS / name / "proc" / "cpuinfo").read_text().count("processor\t:")


def test_the_boards_own_words_and_sizes():
    assert board.detect(BOARDS / "rpi5").model == "Raspberry Pi 5 Model B Rev 1.0"  # trailing NUL stripped
    assert board.detect(BOARDS / "rpi4-cpuinfo-only").model == "Raspberry Pi 4 Model B Rev 1.2"  # cpuinfo's Model
    pc = board.detect(BOARDS / "x86-64")
    assert (pc.model, pc.cores, pc.memory_mb) == ("Intel(R) Celeron(R) CPU  N3050  @ 1.60GHz", 2, 3829)
    agx = board.detect(BOARDS / "jetson-agx-orin")
    assert (agx.model, agx.cores) == ("Jetson AGX Orin", 12)


def test_the_cpuinfo_only_pi_is_decided_by_its_revision_code_not_its_model_line():
    found = board.detect(BOARDS / "rpi4-cpuinfo-only", machine="x86_64")
    assert found.reasons[-1] == "/proc/cpuinfo: Revision c03112 is a Raspberry Pi 4 Model B (type 0x11): Raspberry Pi 4"
    assert not [r for r in found.reasons if "Model" in r and "Revision" not in r]  # the Model line was not needed
    assert found.reasons[0] == "/proc/device-tree: no model or compatible (not a device-tree board)"


@pytest.mark.parametrize("machine, key", [("x86_64", "x86-64"), ("AMD64", "x86-64"), ("aarch64", "arm64"),
                                          ("arm64", "arm64"), ("riscv64", "arm64")])
def test_garbage_files_fall_back_to_the_machines_profile_and_say_what_was_skipped(machine, key):
    found = board.detect(BOARDS / "garbage", machine=machine)
    assert found.profile.key == key
    text = "\n".join(found.reasons)
    for words in ("/proc/device-tree/model: empty: skipped",
                  "/proc/device-tree/compatible: not a list of text strings",
                  "/etc/nv_tegra_release: cannot be read",
                  "/proc/cpuinfo: not text: skipped",
                  "/proc/meminfo: no 'MemTotal: <n> kB' line",
                  f"the machine is {machine!r}"):
        assert words in text
    assert found.memory_mb is None and found.cores == (os.cpu_count() or 1)
    if machine == "riscv64":
        assert "which Harken has no profile for" in said(found, "the machine is")
    assert board.usb_card(BOARDS / "garbage") is None


def test_an_empty_root_is_the_machine_and_nothing_raises(tmp_path):
    found = board.detect(tmp_path, machine="aarch64")
    assert found.profile.key == "arm64" and found.model == "aarch64" and found.memory_mb is None


def test_the_zero_2_w_and_the_pi_3_share_a_soc_and_the_model_tells_them_apart(tmp_path):
    zero = tree(tmp_path / "zero", {"proc/device-tree/compatible": b"brcm,bcm2837\0",
                                    "proc/device-tree/model": b"Raspberry Pi Zero 2 W Rev 1.0\0"})
    pi3 = tree(tmp_path / "pi3", {"proc/device-tree/compatible": b"brcm,bcm2837\0",
                                  "proc/device-tree/model": b"Raspberry Pi 3 Model B Rev 1.2\0"})
    assert board.detect(zero).profile.key == "rpi-zero2"
    assert board.detect(pi3).profile.key == "rpi3"
    assert "SoC 'brcm,bcm2837'" in said(board.detect(pi3), "/proc/device-tree/compatible")
    pi400 = tree(tmp_path / "400", {"proc/device-tree/compatible": b"raspberrypi,400\0brcm,bcm2711\0"})
    assert board.detect(pi400).profile.key == "rpi4"


def test_an_orin_module_we_do_not_know_gets_the_cpu_profile_not_cuda(tmp_path):
    root = tree(tmp_path, {"proc/device-tree/compatible": b"nvidia,p3999-0000+p3888-0000\0nvidia,tegra234\0",
                           "proc/device-tree/model": b"Some Orin Carrier\0",
                           "etc/nv_tegra_release": (BOARDS / "jetson-orin-nano" / "etc" / "nv_tegra_release").read_bytes()})
    found = board.detect(root, machine="x86_64")
    assert found.profile.key == "arm64" and found.profile.providers == ("CPUExecutionProvider",)
    assert "an Orin (nvidia,tegra234) but no module we know" in said(found, "/proc/device-tree/compatible")
    assert "a Jetson (L4T R36.4.7) whose module was not recognised" in said(found, "/etc/nv_tegra_release")
    # the model's words still decide where the compatible strings do not
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Orin NX Developer Kit\0")
    assert board.detect(root).profile.key == "jetson-orin-nx"


def test_a_forced_profile_skips_detection_but_still_reads_the_board(tmp_path):
    s = settings(board={"profile": "jetson-orin-nx"})
    found = board.for_settings(s, BOARDS / "rpi5")
    assert (found.profile.key, found.forced, found.model, found.cores) == ("jetson-orin-nx", True, "Raspberry Pi 5 Model B Rev 1.0", 4)
    assert found.reasons == ("[board] profile = 'jetson-orin-nx': detection skipped",)
    assert board.for_settings(config.Settings(), BOARDS / "rpi5").profile.key == "rpi5"


def test_usb_card_is_the_first_usb_audio_card(tmp_path):
    assert board.usb_card(BOARDS / "rpi4") == "Device"  # after the headphones and two HDMI cards
    assert board.usb_card(BOARDS / "jetson-orin-nano") == "Device"  # after HDA and APE
    assert board.usb_card(BOARDS / "x86-64") is None  # HDA Intel only
    root = tree(tmp_path, {"proc/asound/cards": (
        " 0 [vc4hdmi        ]: vc4-hdmi - vc4-hdmi\n                      vc4-hdmi\n"
        " 1 [Mic            ]: USB-Audio - Blue Snowball\n                      BLUE Blue Snowball at usb-1, full speed\n"
        " 2 [Device         ]: USB-Audio - USB PnP Sound Device\n                      C-Media at usb-2, full speed\n")})
    assert board.usb_card(root) == "Mic"


def test_apply_fills_what_is_unset_from_the_profile():
    pi3 = board.detect(BOARDS / "rpi3")
    s = board.apply(config.Settings(), pi3, BOARDS / "rpi3")
    assert (s.threads.llm_shared, s.threads.tts, s.threads.llm, s.threads.asr) == (1, 1, 0, 0)  # others still derived
    assert s.audio.capture_device == s.audio.playback_device == "plughw:CARD=Device,DEV=0"
    assert (s.board.profile, s.board.providers, s.board.gpu_layers) == ("rpi3", ("CPUExecutionProvider",), 0)
    assert (s.board.button, s.board.led, s.board.led_kind) == ("GPIO17", "GPIO12", "pwm")
    assert (s.thermal.hot, s.thermal.critical) == (75.0, 82.0)
    nano = board.detect(BOARDS / "jetson-orin-nano")
    s = board.apply(config.Settings(), nano, BOARDS / "jetson-orin-nano")
    assert (s.board.providers, s.board.gpu_layers) == (("CUDAExecutionProvider", "CPUExecutionProvider"), 99)
    assert (s.board.button, s.board.led, s.board.led_kind, s.thermal.critical) == ("none", "none", "", 95.0)


def test_apply_keeps_every_explicit_setting():
    pi3 = board.detect(BOARDS / "rpi3")
    explicit = settings(threads={"tts": 2}, audio={"capture_device": "hw:CARD=Array,DEV=0"},
                        board={"providers": ("XnnpackExecutionProvider", "CPUExecutionProvider"), "gpu_layers": 0,
                               "button": "none", "led": "GPIO5,GPIO6,GPIO13"},
                        thermal={"hot": 70.0})
    s = board.apply(explicit, pi3, BOARDS / "rpi3")
    assert (s.threads.tts, s.threads.llm_shared) == (2, 1)
    assert (s.audio.capture_device, s.audio.playback_device) == ("hw:CARD=Array,DEV=0", "plughw:CARD=Device,DEV=0")
    assert s.board.providers == ("XnnpackExecutionProvider", "CPUExecutionProvider")
    assert (s.board.gpu_layers, s.board.button, s.board.led, s.board.led_kind) == (0, "none", "GPIO5,GPIO6,GPIO13", "rgb")
    assert (s.thermal.hot, s.thermal.critical) == (70.0, 82.0)
    nano = board.detect(BOARDS / "jetson-orin-nano")
    s = board.apply(settings(board={"gpu_layers": 0, "led": "GPIO7"}), nano, BOARDS / "jetson-orin-nano")
    assert (s.board.gpu_layers, s.board.led, s.board.led_kind) == (0, "GPIO7", "led")  # the profile has no kind: on/off


def test_audio_stays_default_without_a_usb_card_or_on_a_default_profile(tmp_path):
    no_usb = tree(tmp_path / "pi", {"proc/device-tree/compatible": b"raspberrypi,5-model-b\0brcm,bcm2712\0",
                                    "proc/asound/cards": (BOARDS / "rpi5/proc/asound/cards").read_text().split(" 2 [")[0]})
    s = board.apply(config.Settings(), board.detect(no_usb), no_usb)
    assert (s.board.profile, s.audio.capture_device) == ("rpi5", "default")
    pc = tree(tmp_path / "pc", {"proc/cpuinfo": (BOARDS / "x86-64/proc/cpuinfo").read_text(),
                                "proc/asound/cards": (BOARDS / "rpi5/proc/asound/cards").read_text()})
    s = board.apply(config.Settings(), board.detect(pc), pc)
    assert (s.board.profile, s.audio.capture_device) == ("x86-64", "default")  # "default": ALSA's, USB card or not


@pytest.mark.parametrize("thermal", [{"hot": 85.0}, {"critical": 70.0}, {"hot": 80.0, "critical": 80.0}])
def test_hot_at_or_above_critical_is_a_config_error(thermal):
    with pytest.raises(ConfigError) as err:
        board.apply(settings(thermal=thermal), board.detect(BOARDS / "rpi4"), BOARDS / "rpi4")
    (problem,) = err.value.problems
    assert "[thermal] hot" in problem and "[thermal] critical" in problem and "set [thermal] hot below" in problem


def test_an_rgb_kind_needs_three_pins():
    with pytest.raises(ConfigError, match=r"\[board\] led_kind = 'rgb'"):
        board.apply(settings(board={"led_kind": "rgb"}), board.detect(BOARDS / "rpi4"), BOARDS / "rpi4")


def test_providers_are_chosen_from_what_onnxruntime_offers():
    cuda = ("CUDAExecutionProvider", "CPUExecutionProvider")
    chosen, why = board.choose_providers(cuda, ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))
    assert chosen == cuda and "all offered" in why
    chosen, why = board.choose_providers(cuda, ("AzureExecutionProvider", "CPUExecutionProvider"))
    assert chosen == ("CPUExecutionProvider",)
    assert why == ("CUDAExecutionProvider is not offered by the installed onnxruntime (it offers: AzureExecutionProvider, "
                   "CPUExecutionProvider): using CPUExecutionProvider")
    chosen, _ = board.choose_providers(("CPUExecutionProvider", "CUDAExecutionProvider"), ("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert chosen == cuda  # CPU is the fallback, always last
    chosen, why = board.choose_providers(cuda, ())
    assert chosen == ("CPUExecutionProvider",) and "onnxruntime is not installed" in why


def test_the_real_onnxruntime_here_gives_a_jetson_the_cpu():
    offered = board.offered_providers()
    assert "CPUExecutionProvider" in offered
    if "CUDAExecutionProvider" in offered:
        pytest.skip(f"this onnxruntime offers CUDA ({offered}): the CPU-build case cannot be shown here")
    s = board.apply(config.Settings(), board.detect(BOARDS / "jetson-orin-nx"), BOARDS / "jetson-orin-nx")
    chosen, why = board.choose_providers(s.board.providers, offered)
    assert chosen == ("CPUExecutionProvider",)
    assert why.startswith("CUDAExecutionProvider is not offered by the installed onnxruntime (it offers: ")


def test_the_real_llama_cpp_here_keeps_the_layers_on_the_cpu():
    supported = board.gpu_offload_supported()
    if supported:
        pytest.skip("this llama.cpp was built with GPU offload: the CPU-build case cannot be shown here")
    assert board.choose_gpu_layers(99, supported) == (0, "llama.cpp was built without GPU offload: all layers on the CPU (wanted 99)")
    assert board.choose_gpu_layers(99, True) == (99, "llama.cpp can offload to the GPU: up to 99 layers on it")
    assert board.choose_gpu_layers(0, True)[0] == 0


def test_describe_is_json_and_plans_threads_for_the_boards_cores():
    nano = board.detect(BOARDS / "jetson-orin-nano")
    out = json.loads(json.dumps(board.describe(nano, board.apply(config.Settings(), nano, BOARDS / "jetson-orin-nano"))))
    assert (out["profile"], out["family"], out["memory_mb"], out["gpu_layers"]) == ("jetson-orin-nano", "jetson", 7619, 99)
    assert out["threads"]["cores"] == 6 and out["audio"]["capture"] == "plughw:CARD=Device,DEV=0"
    assert out["reasons"] == list(nano.reasons)
