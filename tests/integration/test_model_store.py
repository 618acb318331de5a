"""The model store heals itself: an incomplete store directory is rebuilt, leftovers are removed.

Each test uses a real data directory and the real Moonshine tokenizer from its package.
"""

import json
import os

import pytest

from harken.models import catalog, store

TOKENS = 32768


@pytest.fixture()
def moonshine():
    item = catalog.entry("asr", "moonshine-tiny-en")
    return item, item.paths()["assets/tiny-en/tokenizer.bin"]


def store_dir(data_dir, item):
    return store.model_dir(data_dir, item)


def assert_whole(path):
    lines = path.read_text().splitlines()
    assert len(lines) == TOKENS and lines[-1].endswith(f" {TOKENS - 1}")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["files"]["tokens.txt"]["sha256"] == catalog.sha256_file(path)


def no_leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name != ".lock")


def test_a_store_directory_without_tokens_txt_is_rebuilt(tmp_path, moonshine):
    item, tokenizer = moonshine
    path = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    path.unlink()  # a power cut before the file reached the disk, or someone deleted it
    again = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    assert again == path
    assert_whole(again)
    assert no_leftovers(again.parent.parent) == [again.parent.name]


def test_an_empty_store_directory_is_rebuilt(tmp_path, moonshine):
    item, tokenizer = moonshine
    final = store_dir(tmp_path, item)
    final.mkdir(parents=True)
    (final / "manifest.json").write_text("")  # a manifest that never got its bytes
    assert_whole(store.ensure_moonshine_tokens(tmp_path, item, tokenizer))


@pytest.mark.parametrize("manifest", [
    {"files": {"tokens.txt": "0" * 64}},  # another file's sha
    {"role": "asr", "name": "other-model", "source": "x==1", "files": {}},
    ["not", "an", "object"],
])
def test_a_manifest_that_does_not_match_is_rebuilt(tmp_path, moonshine, manifest):
    item, tokenizer = moonshine
    path = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    (path.parent / "manifest.json").write_text(json.dumps(manifest))
    assert_whole(store.ensure_moonshine_tokens(tmp_path, item, tokenizer))
    assert json.loads((path.parent / "manifest.json").read_text())["source"] == item.package


def test_leftovers_of_interrupted_installs_are_removed_even_when_the_store_is_whole(tmp_path, moonshine):
    item, tokenizer = moonshine
    path = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    parent = path.parent.parent
    half = parent / ".tmp-k2j4h1"  # an install cut off before its rename
    half.mkdir()
    (half / "tokens.txt").write_text("half of it")
    (parent / f".old-{path.parent.name}-4242").mkdir()  # a damaged directory cut off while being replaced
    before = os.stat(path).st_ino
    assert store.ensure_moonshine_tokens(tmp_path, item, tokenizer) == path
    assert no_leftovers(parent) == [path.parent.name]
    assert os.stat(path).st_ino == before  # the whole store directory itself was left alone


def test_a_directory_with_only_leftovers_gets_a_store_and_no_temporary_files(tmp_path, moonshine):
    item, tokenizer = moonshine
    parent = store_dir(tmp_path, item).parent
    parent.mkdir(parents=True)
    (parent / ".tmp-abcdef").mkdir()
    path = store.ensure_moonshine_tokens(tmp_path, item, tokenizer)
    assert_whole(path)
    assert no_leftovers(parent) == [path.parent.name]
