"""Knowledge packs: reading documents, refusing hostile ones, the store's atomic installs, search and the grounded decision."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from harken.errors import KnowledgeError
from harken.knowledge import documents, ground, intake, packs
from harken.knowledge.retriever import PackRetriever

GUIDE = """---
title: not text anyone asks about
---
Hotel Seeblick
==============

Welcome to **the hotel**. See [the map](http://example.invalid/map).

## Breakfast

On weekdays breakfast is served from 6:45 am to 10:00 am in the Garden Room.

| Day | Hours |
|---|---|
| Saturday | 7:30–10:30 |
| Sunday | 8:00–11:15 |

## Wifi

The network is called Seeblick-Guest and the password is Moorlake84.

Parking
-------
- The garage costs 14 euros per night.
"""
PAGE = """<html><head><title>Spa</title><style>p { color: red }</style><script>var secret = "nope";</script></head>
<body><nav>Home | Rooms | Spa</nav><h1>Spa &amp; Pool</h1><p>The pool is open from <b>7 am</b> to 9 pm.</p>
<h2>Prices</h2><table><tr><th>Treatment</th><th>Price</th></tr><tr><td>Sauna</td><td>15 euros</td></tr></table>
<footer>(c) Seeblick</footer></body></html>"""


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "guide"
    folder.mkdir()
    (folder / "guide.md").write_text(GUIDE)
    (folder / "spa.html").write_text(PAGE)
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a document")
    return folder


def test_markdown_sections_keep_their_headings_tables_and_text(docs):
    sections = documents.read(docs / "guide.md", "guide.md")
    by_heading = {s.headings: s.text for s in sections}
    assert by_heading[("Hotel Seeblick",)] == "Welcome to the hotel. See the map."
    assert "6:45 am to 10:00 am" in by_heading[("Hotel Seeblick", "Breakfast")]
    assert "Day: Sunday; Hours: 8:00–11:15" in by_heading[("Hotel Seeblick", "Breakfast")]
    assert by_heading[("Hotel Seeblick", "Parking")] == "The garage costs 14 euros per night."
    assert not any("title:" in s.text for s in sections)


def test_html_keeps_headings_and_tables_and_drops_scripts_styles_navigation_and_footers(docs):
    sections = documents.read(docs / "spa.html", "spa.html")
    text = "\n".join(s.text for s in sections)
    assert ("Spa & Pool",) in [s.headings for s in sections]
    assert "The pool is open from 7 am to 9 pm." in text and "Treatment: Sauna; Price: 15 euros" in text
    for hidden in ("secret", "color", "Home | Rooms", "(c) Seeblick"):
        assert hidden not in text


def test_plain_text_headings_in_capitals_or_underlined(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("CHECK-OUT\nRooms must be left by 11 am.\n\nLate check-out\n--------------\nUntil 2 pm for 20 euros.\n")
    sections = documents.read(path, "notes.txt")
    assert [(s.headings, s.text) for s in sections] == [(("CHECK-OUT",), "Rooms must be left by 11 am."),
                                                       (("Late check-out",), "Until 2 pm for 20 euros.")]


@pytest.mark.parametrize("name, content, says", [
    ("binary.md", b"# x\n\0\0\0\x01\x02 binary", "binary"),
    ("latin1.txt", "Caf\xe9 opens at 8".encode("latin-1"), "iconv"),
    ("controls.txt", bytes(range(1, 31)) * 50, "control characters"),
    ("deep.html", b"<div>" * 300 + b"x" + b"</div>" * 300, "nested deeper"),
    ("photo.png", b"\x89PNG", "a pack takes"),
])
def test_hostile_or_wrong_files_are_refused_with_what_to_do(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KnowledgeError, match=says):
        packs.install(tmp_path / "data", "bad", [path])
    assert not (tmp_path / "data" / "knowledge").exists() or not [p for p in (tmp_path / "data" / "knowledge").iterdir()
                                                                   if p.name != ".lock"]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "huge.txt"
    path.write_text("word " * 1000)
    with pytest.raises(KnowledgeError, match="split it"):
        packs.install(tmp_path / "data", "huge", [path])


def test_utf16_with_its_mark_is_read(tmp_path):
    path = tmp_path / "u16.txt"
    path.write_bytes("The sauna opens at 4 pm.".encode("utf-16"))
    assert documents.read(path, "u16.txt")[0].text == "The sauna opens at 4 pm."


def test_add_search_reinstall_and_remove_reach_a_running_retriever(tmp_path, docs):
    data = tmp_path / "data"
    retriever = PackRetriever(data)
    assert retriever.search("wifi password") == []
    pack = packs.install(data, "hotel", [docs])
    assert pack.summary()["documents"] == 2  # the photo is skipped
    best = retriever.search("what's the wifi password?")[0]
    assert best.pack == "hotel" and "Moorlake84" in best.text and best.coverage == 1.0 and best.headings.endswith("Wifi")
    (docs / "guide.md").write_text(GUIDE.replace("Moorlake84", "Heron2027"))
    packs.install(data, "hotel", [docs])
    assert "Heron2027" in retriever.search("wifi password")[0].text  # picked up without a restart
    assert [p.name for p in packs.installed(data)[0]] == ["hotel"]
    packs.remove(data, "hotel")
    assert retriever.search("wifi password") == [] and retriever.packs == []
    with pytest.raises(KnowledgeError, match="no knowledge pack named 'hotel'"):
        packs.remove(data, "hotel")


def test_a_bad_document_leaves_the_installed_pack_as_it_was(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs])
    before = (data / "knowledge" / "hotel" / "pack.json").read_text()
    (docs / "broken.txt").write_bytes(b"menu \x80\x81 prices")
    with pytest.raises(KnowledgeError, match="not UTF-8"):
        packs.install(data, "hotel", [docs])
    assert (data / "knowledge" / "hotel" / "pack.json").read_text() == before
    assert sorted(p.name for p in (data / "knowledge").iterdir()) == [".lock", "hotel"]


def test_tidy_puts_back_a_pack_whose_replacement_was_cut_between_its_two_renames(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs])
    top = data / "knowledge"
    os.rename(top / "hotel", top / ".old-hotel-4242")  # the old pack moved aside, the new one never renamed in
    (top / ".tmp-hotel-4194305").mkdir()  # above any pid_max: its installer is gone
    (top / ".gone-spa-4242").mkdir()
    with packs.lock(data):
        packs.tidy(data)
    assert sorted(p.name for p in top.iterdir()) == [".lock", "hotel"]
    assert "Moorlake84" in PackRetriever(data).search("wifi password")[0].text


@pytest.mark.parametrize("name", ["", "Hotel", "../x", "a/b", ".hidden", "x" * 65])
def test_bad_pack_names_are_refused(tmp_path, docs, name):
    with pytest.raises(KnowledgeError, match="not a pack name"):
        packs.install(tmp_path / "data", name, [docs])


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_archives_unpack_within_a_packs_limits(tmp_path, monkeypatch):
    good = _zip(tmp_path / "guide.zip", {"guide/wifi.md": b"# Wifi\nThe password is Moorlake84.\n"})
    [folder] = intake.expand([good], tmp_path / "scratch")
    assert (folder / "guide" / "wifi.md").read_text().startswith("# Wifi")
    evil = _zip(tmp_path / "evil.zip", {"../../etc/cron.d/x": b"* * * * * root rm -rf /"})
    with pytest.raises(KnowledgeError, match="outside the archive"):
        intake.expand([evil], tmp_path / "scratch2")
    assert not (tmp_path / "etc").exists()
    tarball = tmp_path / "links.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        link = tarfile.TarInfo("passwd.md")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        doc = tarfile.TarInfo("ok.md")
        body = b"# Ok\nfine\n"
        doc.size = len(body)
        tf.addfile(doc, io.BytesIO(body))
    [unpacked] = intake.expand([tarball], tmp_path / "scratch3")
    assert sorted(p.name for p in unpacked.iterdir()) == ["ok.md"]  # the link is not followed, not even made
    monkeypatch.setattr(packs, "MAX_PACK_BYTES", 1000)
    bomb = _zip(tmp_path / "bomb.zip", {"a.txt": b"a" * 100000})
    with pytest.raises(KnowledgeError, match="unpacks to more than"):
        intake.expand([bomb], tmp_path / "scratch4")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(KnowledgeError, match="not a readable archive"):
        intake.expand([junk], tmp_path / "scratch5")


def test_the_decision_answers_declines_or_leaves_it_to_the_language_model(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs])
    retriever = PackRetriever(data)
    found = ground.decide(retriever, "What's the wifi password?")
    assert found is not None and found.kind == "answer"
    assert ground.extract(found, "What's the wifi password?") == "The network is called Seeblick-Guest and the password is Moorlake84."
    sunday = ground.decide(retriever, "when is breakfast on sunday")
    assert sunday is not None and "11:15" in ground.extract(sunday, "when is breakfast on sunday")
    declined = ground.decide(retriever, "does the hotel have a casino?")
    assert declined is not None and declined.kind == "decline" and ground.extract(declined, "") == ground.DECLINE
    assert ground.decide(retriever, "who wrote the origin of species") is None
    event = found.event(share_text=False)
    assert event["pack"] == "hotel" and "text" not in event["passage"] and event["passage"]["headings"].endswith("Wifi")
    assert "Moorlake84" in found.event(share_text=True)["passage"]["text"]


def test_a_general_pack_does_not_decline(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs], declines=False)
    assert ground.decide(PackRetriever(data), "does the hotel have a casino?") is None
    assert json.loads((data / "knowledge" / "hotel" / "pack.json").read_text())["declines"] is False


def test_a_damaged_index_is_reported_and_skipped(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs])
    (data / "knowledge" / "hotel" / "index.sqlite").write_bytes(b"not a database at all" * 100)
    os.utime(data / "knowledge", ns=(1, 1))  # as a new install would: the retriever looks again
    retriever = PackRetriever(data)
    assert retriever.search("wifi password") == []
    assert retriever.problems and "reinstall the pack" in retriever.problems[0]


def test_lists_laid_out_for_the_eye_keep_their_entries_apart(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_text("EMERGENCY NUMBERS\nAmbulance, fire brigade ....... 112\nPolice .............. 110\n"
                    "Network name:     Seeblick-Guest\n")
    [section] = documents.read(path, "numbers.txt")
    assert section.text.split("\n") == ["Ambulance, fire brigade: 112", "Police: 110", "Network name: Seeblick-Guest"]


def test_a_sentence_that_introduces_a_list_is_said_with_it_and_table_cells_lose_their_markup(tmp_path):
    path = tmp_path / "drinks.md"
    path.write_text("# Drinks\n\n## Memo\n\nYou can save your own cup size for every drink:\n\n"
                    "- Hold the drink's button for 3 seconds.\n- Release it when the cup is full.\n\n"
                    "| Button | Volume |\n|---|---|\n| **Espresso** | 40 ml |\n")
    data = tmp_path / "data"
    packs.install(data, "machine", [path])
    found = ground.decide(PackRetriever(data), "how do I save my own cup size")
    assert found is not None and ground.extract(found, "how do I save my own cup size") == (
        "You can save your own cup size for every drink: Hold the drink's button for 3 seconds. Release it when the cup is full.")
    espresso = ground.decide(PackRetriever(data), "what volume is an espresso")
    assert espresso is not None and ground.extract(espresso, "what volume is an espresso") == "Memo: Button: Espresso; Volume: 40 ml."


def test_an_install_after_a_cut_replacement_puts_the_old_pack_back_and_spares_live_work(tmp_path, docs):
    data = tmp_path / "data"
    packs.install(data, "hotel", [docs])
    top = data / "knowledge"
    os.rename(top / "hotel", top / ".old-hotel-4242")  # a replacement cut between its two renames (the pid does not matter for it)
    busy = top / f".tmp-scratch-abc-{os.getpid()}"  # a live process's scratch (this one's): not to be touched
    busy.mkdir()
    packs.install(data, "spa", [docs / "spa.html"])
    assert sorted(p.name for p in top.iterdir()) == [".lock", busy.name, "hotel", "spa"]
    assert "Moorlake84" in PackRetriever(data).search("wifi password")[0].text
