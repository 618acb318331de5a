"""First-boot provisioning from the card's harken.toml (`harken provision`), on directories standing in
for the FAT boot partition and /etc/harken. The same command runs inside the QEMU boot test
(test_image.py) on a real image."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from harken import config
from harken.provision import ERRORS, REPORT, notes, provision
from support.cards import GOOD, GROUP, card  # noqa: F401  (card: a fixture)

KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="  # an Ed25519 public key as `harken fleet keygen` writes it (32 bytes, base64)

def test_a_good_file_is_applied_and_its_secret_leaves_the_card(card: tuple[Path, Path]) -> None:
    boot, etc = card
    (boot / "harken.toml").write_text(GOOD.replace('model = "alexa"', f'model = "alexa"\n\n[fleet]\ntrusted_keys = ["{KEY}"]'))
    outcome = provision(boot, etc, group=GROUP)
    assert outcome is not None and outcome.problems == [] and outcome.written
    settings = config.load([etc / "harken.toml"])
    assert settings.device.id == "kitchen-1" and settings.device.name == "Kitchen"
    assert settings.device.groups == ("kitchen", "downstairs")
    assert settings.mqtt.password == "s3cret-Pa55" and settings.mqtt.username == "kitchen"
    assert settings.mqtt.ca_file == str(etc / "fleet-ca.pem") and (etc / "fleet-ca.pem").read_text().startswith("-----BEGIN")
    assert settings.wake.model == "alexa" and settings.fleet.trusted_keys == (KEY,)
    mode = (etc / "harken.toml").stat()
    assert oct(mode.st_mode & 0o777) == "0o640" and mode.st_gid == os.getgid()
    on_card = (boot / "harken.toml").read_text()
    assert "s3cret" not in on_card and "# my kitchen speaker" in on_card  # the user's comments stay
    assert "moved into /etc/harken/harken.toml" in on_card
    assert tomllib.loads(on_card)["device"]["id"] == "kitchen-1"  # still a valid file to edit again
    assert not (boot / ERRORS).exists()
    assert json.loads((etc / REPORT).read_text())["problems"] == [] and notes([etc / "harken.toml"]) == []


def test_a_later_file_without_the_password_keeps_it(card: tuple[Path, Path]) -> None:
    boot, etc = card
    (boot / "harken.toml").write_text(GOOD)
    provision(boot, etc, group=GROUP)
    # the user edits the cleared file on the card: a new name, the password line still a comment
    (boot / "harken.toml").write_text((boot / "harken.toml").read_text().replace('"Kitchen"', '"Kitchen shelf"'))
    outcome = provision(boot, etc, group=GROUP)
    assert outcome is not None and outcome.problems == []
    settings = config.load([etc / "harken.toml"])
    assert settings.device.name == "Kitchen shelf" and settings.mqtt.password == "s3cret-Pa55"


def test_bad_settings_are_left_out_and_reported_and_the_rest_applies(card: tuple[Path, Path]) -> None:
    boot, etc = card
    bad = GOOD.replace('model = "alexa"', 'model = "hey_computer"').replace('id = "kitchen-1"', 'id = "kitchen/1"')
    (boot / "harken.toml").write_text(bad + '\n[speakers]\nloud = true\n')
    outcome = provision(boot, etc, group=GROUP)
    assert outcome is not None and outcome.written and len(outcome.problems) == 3
    settings = config.load([etc / "harken.toml"])
    assert settings.mqtt.url == "mqtts://broker.lan:8883" and settings.mqtt.password == "s3cret-Pa55"  # joins its fleet
    assert settings.device.id == "" and settings.wake.model == "hey_jarvis"  # the bad ones: defaults
    errors = (boot / ERRORS).read_text()
    for what in ("[wake] model = 'hey_computer'", "[device] id = 'kitchen/1'", "unknown section [speakers]"):
        assert what in errors
    assert "s3cret" not in errors and "s3cret" not in (boot / "harken.toml").read_text()
    reported = notes([etc / "harken.toml"])
    assert len(reported) == 3 and all(n.startswith("harken.toml on the boot partition") for n in reported)
    # fixed on the card: the errors file goes away
    (boot / "harken.toml").write_text(GOOD)
    assert provision(boot, etc, group=GROUP).problems == []  # type: ignore[union-attr]
    assert not (boot / ERRORS).exists() and notes([etc / "harken.toml"]) == []


def test_a_file_that_is_not_toml_changes_nothing_but_loses_its_password(card: tuple[Path, Path]) -> None:
    boot, etc = card
    (boot / "harken.toml").write_text(GOOD)
    provision(boot, etc, group=GROUP)
    before = (etc / "harken.toml").read_bytes()
    (boot / "harken.toml").write_text('[device]\nid = "kitchen-2\n[mqtt]\npassword = "other-secret"\n')
    outcome = provision(boot, etc, group=GROUP)
    assert outcome is not None and not outcome.written and outcome.applied == []
    assert (etc / "harken.toml").read_bytes() == before
    assert "not valid TOML" in (boot / ERRORS).read_text()
    assert "other-secret" not in (boot / "harken.toml").read_text()


def test_a_missing_ca_file_is_reported(card: tuple[Path, Path]) -> None:
    boot, etc = card
    (boot / "harken.toml").write_text(GOOD.replace("fleet-ca.pem", "other-ca.pem"))
    outcome = provision(boot, etc, group=GROUP)
    assert outcome is not None and any("ca_file = 'other-ca.pem' is not a file on the boot partition" in p
                                       for p in outcome.problems)
    assert config.load([etc / "harken.toml"]).mqtt.ca_file == ""
