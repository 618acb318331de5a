from pathlib import Path

import pytest

from harken import config
from harken.errors import ConfigError
from support.paths import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harken.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_example_matches_them():
    example = REPO / "harken.toml.example"
    assert config.load([example]) == config.Settings()


def test_values_are_read_and_later_files_win(tmp_path):
    a = write(tmp_path, '[wake]\nmodel = "alexa"\nthreshold = 0.6\n[llm]\nmax_tokens = 40\n')
    b = tmp_path / "b.toml"
    b.write_text("[wake]\nthreshold = 0.7\n")
    s = config.load([a, b])
    assert (s.wake.model, s.wake.threshold, s.llm.max_tokens) == ("alexa", 0.7, 40)


def test_every_problem_is_reported_with_file_key_and_fix(tmp_path):
    path = write(tmp_path, '[wake]\nmodel = "hey_siri"\nthreshold = "high"\n[llm]\nmax_tokens = 0\ncolour = 3\n[bogus]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        config.load([path])
    problems = err.value.problems
    assert len(problems) == 5, problems
    text = str(err.value)
    assert all(str(path) in p for p in problems)
    assert "[wake] model = 'hey_siri' must be one of 'hey_jarvis'" in text
    assert "threshold = 'high' must be of type float" in text
    assert "max_tokens = 0 must be at least 8" in text
    assert "unknown key 'colour' in [llm]; known keys:" in text
    assert "unknown section [bogus]" in text


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load([write(tmp_path, "[wake\n")])
    with pytest.raises(ConfigError, match="file not found"):
        config.load([tmp_path / "nope.toml"])


def test_bool_is_not_a_number(tmp_path):
    with pytest.raises(ConfigError, match="must be of type int"):
        config.load([write(tmp_path, "[llm]\nmax_tokens = true\n")])


def test_integer_where_float_expected_becomes_float(tmp_path):
    s = config.load([write(tmp_path, "[listen]\ntimeout = 5\n")])
    assert s.listen.timeout == 5.0 and isinstance(s.listen.timeout, float)


def test_lists_of_strings_and_fleet_keys_are_checked(tmp_path):
    from harken.fleet.signing import generate_keypair

    _, pub = generate_keypair(tmp_path / "keys")
    good = write(tmp_path, f'[device]\nid = "kitchen-1"\ngroups = ["kitchen", "ground"]\n[fleet]\ntrusted_keys = ["{pub.read_text().strip()}"]\n')
    settings = config.load([good])
    assert settings.device.groups == ("kitchen", "ground") and len(settings.fleet.trusted_keys) == 1
    assert config.from_dict(config.to_dict(settings)) == settings  # as handed to workers
    bad = write(tmp_path, '[device]\nid = "a/b"\ngroups = "kitchen"\n[fleet]\ntrusted_keys = ["c2hvcnQ="]\n[mqtt]\nurl = "http://x"\n')
    with pytest.raises(ConfigError) as err:
        config.load([bad])
    text = str(err.value)
    assert "[device] id = 'a/b' may hold only letters" in text
    assert "[device] groups = 'kitchen' must be of type list of strings" in text
    assert "entry 1 ('c2hvcnQ=') is not an Ed25519 public key" in text and "operator.pub" in text
    assert "expected mqtt://host[:port] or mqtts://host[:port]" in text


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[llm]\nsystem_prompt = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        config.load([path])
    assert "not UTF-8 text" in str(err.value) and str(path) in str(err.value)
