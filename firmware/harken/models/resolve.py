"""From a model name in the settings to the files an engine loads: one resolver for every engine.

A name is a store entry (``name`` or ``name@<sha256-prefix>``, see ``store.py``)
or one of the catalog's defaults, loaded from its package as before. A store
entry wins over a default of the same name. Every file is checked against its
recorded sha256 and size on every load, as the catalog's always were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harken.errors import ModelError
from harken.models import catalog, store
from harken.models.formats import KINDS, role_check
from harken.models.templates import ChatTemplate

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    role: str
    name: str
    id: str
    """The store id (``name@prefix``), or the catalog name for a default loaded from its package."""
    files: dict[str, Path]
    """Kind (``formats.KINDS``) → path."""
    origin: str
    """``store`` or ``catalog``."""
    source: str
    chat: ChatTemplate | None = None


def resolve(role: str, name: str, data_dir: Path) -> Resolved:
    """The files of the model ``name`` for ``role``, verified; ModelError listing what is installed if there is none."""
    role_check(role)
    if "@" in name:
        path = store.models_root(data_dir) / role / name
        if not path.is_dir():
            raise ModelError(_unknown(role, name, data_dir))
        item = store.read_entry(path)
        store.verify_entry(item)
        return from_entry(item)
    picked = pick(role, name, data_dir)
    if picked is not None:
        store.verify_entry(picked)
        return from_entry(picked)
    default = next((e for e in catalog.CATALOG if e.role == role and e.name == name), None)
    if default is None:
        raise ModelError(_unknown(role, name, data_dir))
    return _from_catalog(default, data_dir)


def size_of(role: str, name: str, data_dir: Path) -> int | None:
    """The bytes of the model's files as its manifest or the catalog records them (nothing is read or hashed);
    None if there is no such model."""
    if "@" in name:
        try:
            return store.read_entry(store.models_root(data_dir) / role / name).manifest.size
        except (OSError, ValueError, KeyError, ModelError):
            return None
    item = pick(role, name, data_dir)
    if item is not None:
        return item.manifest.size
    default = next((e for e in catalog.CATALOG if e.role == role and e.name == name), None)
    return None if default is None else default.size


def resolve_dir(role: str, path: Path) -> Resolved:
    """The model in the directory ``path`` (an install not yet renamed into place), without the sha256 check."""
    role_check(role)
    manifest = store.Manifest.from_json((path / store.MANIFEST).read_text(encoding="utf-8"))
    if manifest.role != role:
        raise ModelError(f"{path} holds a {manifest.role} model, not a {role} model")
    return from_entry(store.Entry(path, manifest))


def pick(role: str, name: str, data_dir: Path) -> store.Entry | None:
    """The store entry a bare name means: the only one of that name; of several, the one the selection file
    names (active, then standby), else the newest."""
    candidates = [e for e in store.installed(data_dir, role) if e.name == name]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    from harken.models.selection import read_selection

    choice = read_selection(data_dir).choices.get(role)
    for wanted in (choice.active, choice.standby) if choice else ():
        match = next((e for e in candidates if e.id == wanted), None)
        if match:
            return match
    newest = max(candidates, key=lambda e: e.manifest.installed_at)
    _LOGGER.info("%s model '%s' is installed %d times; using the newest, %s", role, name, len(candidates), newest.id)
    return newest


def from_entry(item: store.Entry) -> Resolved:
    files = {f.kind: item.path / f.name for f in item.manifest.files}
    if item.role == "wake" and not {"melspectrogram", "embedding"} <= files.keys():
        features = catalog.verified_paths(catalog.WAKE_FEATURES)
        files.setdefault("melspectrogram", features[catalog.WAKE_FEATURES.files[0].path])
        files.setdefault("embedding", features[catalog.WAKE_FEATURES.files[1].path])
    chat = item.manifest.extra.get("chat_template")
    return Resolved(item.role, item.name, item.id, files, "store", item.manifest.source,
                    ChatTemplate.from_dict(chat) if chat else None)


def _from_catalog(item: catalog.CatalogEntry, data_dir: Path) -> Resolved:
    paths = catalog.verified_paths(item)
    files = {kind: paths[f.path] for kind, f in zip(KINDS[item.role], item.files)}
    if item.role == "asr":
        files["tokens"] = store.ensure_moonshine_tokens(data_dir, item, files["tokenizer"])
    return Resolved(item.role, item.name, item.name, files, "catalog", item.package)


def _unknown(role: str, name: str, data_dir: Path) -> str:
    entries = store.installed(data_dir, role)
    have = ", ".join(e.id for e in entries) or "none"
    defaults = ", ".join(e.name for e in catalog.CATALOG if e.role == role)
    extra = catalog.known(role, name.split("@")[0])
    hint = (f"install it with: harken models install {role} {extra.name}" if extra
            else f"install it with: harken models install {role} {name.split('@')[0]} --from-file PATH (or --from-url URL --sha256 HEX)")
    return (f"no {role} model named '{name}': installed in the store ({store.models_root(data_dir) / role}): {have}; "
            f"defaults: {defaults}; {hint}")
