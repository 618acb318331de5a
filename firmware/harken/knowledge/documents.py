"""Reading an operator's documents into sections: Markdown, plain text and HTML.

Every file is checked before a word of it is indexed: a size limit, UTF-8 (or
UTF-16 with its byte-order mark), no binary content, HTML no deeper than a page
needs. A file that fails says why and what to do; the pack is not installed.

A section is a run of text under one heading, with the path of headings above
it ("Guest guide › Breakfast › Weekends"), so that a passage found later still
says what it is about. Tables become one line per row, its cells joined with
their column headings; scripts, styles, navigation and footers are left out.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from harken.errors import KnowledgeError

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".html": "html", ".htm": "html"}
"""The kinds of file a pack may hold, by suffix."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest single document (a guest guide is a few hundred KB; a whole manual a few MB)."""
MAX_DEPTH = 256
"""Deepest nesting of HTML elements accepted (real pages stay well under 50)."""
_SKIPPED = {"script", "style", "template", "noscript", "nav", "footer", "svg", "head", "iframe", "object"}
_BLOCKS = {"p", "div", "section", "article", "main", "li", "ul", "ol", "br", "dd", "dt", "blockquote", "pre", "table",
           "tr", "header", "aside", "figure", "figcaption", "address", "hr", "form", "dl", "body"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "param", "source", "track", "wbr"}


@dataclass(frozen=True)
class Section:
    doc: str
    """The file it came from, relative to what was added."""
    headings: tuple[str, ...]
    """The headings above the text, outermost first (the document's title first when it has one)."""
    text: str

    @property
    def where(self) -> str:
        return " › ".join((self.doc, *self.headings[-2:]))


def kind_of(path: Path) -> str | None:
    return SUFFIXES.get(path.suffix.lower())


def decode(path: Path, data: bytes) -> str:
    """The text of a document; KnowledgeError if it is binary or not UTF-8."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise KnowledgeError(f"{path}: starts as UTF-16 but is not ({exc.reason}); save it again as UTF-8") from None
    else:
        if b"\0" in data[:65536]:
            raise KnowledgeError(f"{path}: is a binary file, not text; a pack takes Markdown, plain text or HTML")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise KnowledgeError(f"{path}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                 f"convert it first, e.g. iconv -f latin1 -t utf-8 {path.name} > new-{path.name}") from None
    controls = sum(1 for c in text[:65536] if ord(c) < 32 and c not in "\t\n\r\f")
    if controls > 8 and controls > len(text[:65536]) / 100:
        raise KnowledgeError(f"{path}: is mostly control characters, not text; a pack takes Markdown, plain text or HTML")
    return text


def read(path: Path, name: str) -> list[Section]:
    """The sections of the document at ``path`` (called ``name`` in the pack)."""
    kind = kind_of(path)
    if kind is None:
        raise KnowledgeError(f"{path}: a pack takes {', '.join(sorted(SUFFIXES))} files, not {path.suffix or 'files without a suffix'}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise KnowledgeError(f"{path}: {size / 1e6:.1f} MB is more than a document may be ({MAX_FILE_BYTES / 1e6:.0f} MB); split it")
    text = decode(path, path.read_bytes())
    if kind == "markdown":
        return markdown_sections(text, name)
    if kind == "html":
        return html_sections(text, name, str(path))
    return text_sections(text, name)


# -- Markdown and plain text ---------------------------------------------------------------------
_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_LEADER = re.compile(r"\s*(?:\.\s?){4,}\s*|\s*…{2,}\s*|\s*_{4,}\s*")
"""Dot leaders of a list laid out for the eye ("Ambulance ....... 112"): said as "Ambulance: 112"."""
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _clean_markdown(line: str) -> str:
    line = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", line)  # images: their alt text
    line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links: their text
    line = re.sub(r"<[^>\n]{1,200}>", " ", line)  # inline HTML tags
    line = re.sub(r"(\*\*|__|\*|`)", "", line)
    line = re.sub(r"^\s{0,3}(>\s?)+", "", line)  # quotes
    line = re.sub(r"^\s*([-*+]|\d+[.)])\s+", "", line)  # list markers
    return html.unescape(line)


def _table_row(line: str, header: list[str] | None) -> str | None:
    cells = [_clean_markdown(c).strip() for c in line.strip().strip("|").split("|")]
    if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
        return None  # the separator under a header
    if header and len(header) == len(cells):
        return "; ".join(f"{h}: {c}" if h else c for h, c in zip(header, cells) if c)
    return "; ".join(c for c in cells if c)


def markdown_sections(text: str, doc: str) -> list[Section]:
    """Split Markdown at its headings (ATX ``#`` and underlined), keeping the path of headings."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[0].strip() == "---":  # front matter: not text anyone asks about
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
        if end is not None:
            lines = lines[end + 1:]
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    table_header: list[str] | None = None
    fenced = False

    def flush() -> None:
        joined = _paragraphs(body)
        if joined:
            sections.append(Section(doc, tuple(h for _, h in path), joined))
        body.clear()

    def heading(level: int, title: str) -> None:
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, _clean_markdown(title).strip()))

    underline = -1
    for i, line in enumerate(lines):
        if i == underline:
            continue
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced and (m := _ATX.match(line)):
            heading(len(m.group(1)), m.group(2))
            table_header = None
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not fenced and line.strip() and not line.lstrip().startswith("|") and not _SETEXT.match(line) and _SETEXT.match(nxt):
            heading(1 if nxt.strip().startswith("=") else 2, line.strip())
            underline = i + 1
            continue
        if not fenced and line.lstrip().startswith("|"):
            if table_header is None:
                table_header = [_clean_markdown(c).strip() for c in line.strip().strip("|").split("|")]
                continue
            if row := _table_row(line, table_header):
                body += [row, ""]
            continue
        table_header = None
        body.append(line if fenced else _clean_markdown(line))
    flush()
    return sections


def _paragraphs(lines: list[str]) -> str:
    """Lines joined into paragraphs (a blank line between paragraphs), whitespace tidied. A line laid out as an
    entry of a list ("Police ....... 110", "Network name:   Lindenhof-Guest") stays a line of its own."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        entry = _LEADER.search(line) or re.search(r":\s{2,}\S", line)
        if line.strip() and not entry:
            current.append(line.strip())
            continue
        if current:
            paragraphs.append(" ".join(current))
            current = []
        if entry:
            paragraphs.append(re.sub(r":\s{2,}", ": ", _LEADER.sub(": ", line.strip())))
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def text_sections(text: str, doc: str) -> list[Section]:
    """Plain text: paragraphs; a short line in capitals, or one underlined with = or -, is a heading."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    marked = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _SETEXT.match(line):
            continue
        if stripped and (re.fullmatch(r"[=-]{3,}", nxt) or (stripped.isupper() and len(stripped) <= 80 and re.search(r"[A-Z]{2}", stripped))):
            marked.append(f"## {stripped.rstrip(':')}")
        else:
            marked.append(line)
    return markdown_sections("\n".join(marked), doc)


# -- HTML ----------------------------------------------------------------------------------------
class _Html(HTMLParser):
    def __init__(self, where: str) -> None:
        super().__init__(convert_charrefs=True)
        self.where = where
        self.out: list[str] = []
        self.stack: list[str] = []
        self.skipping = 0
        self.heading: list[str] | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.table_header: list[str] = []
        self.row_has_th = False
        self.title: list[str] | None = None
        self.page_title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br":
                self._text("\n")
            return
        self.stack.append(tag)
        if len(self.stack) > MAX_DEPTH:
            raise KnowledgeError(f"{self.where}: HTML nested deeper than {MAX_DEPTH} elements; this is not a page a person wrote")
        if tag in _SKIPPED or any(k == "hidden" for k, _ in attrs):
            self.skipping += 1
        elif tag == "title":
            self.title = []
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading = []
        elif tag == "tr":
            self.row, self.row_has_th = [], False
        elif tag in ("td", "th"):
            self.cell = []
            self.row_has_th |= tag == "th"
        elif tag in _BLOCKS:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:  # close what was left open inside it
            open_tag = self.stack.pop()
            self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "title" and self.title is not None:
            self.page_title = " ".join("".join(self.title).split())
            self.title = None
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            title = " ".join("".join(self.heading).split())
            self.heading = None
            if title:
                self.out.append(f"\n\n{'#' * int(tag[1])} {title}\n\n")
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            cells, self.row = self.row, None
            if cells and not self.table_header and self.row_has_th:
                self.table_header = cells
            elif cells:
                header = self.table_header if len(self.table_header) == len(cells) else []
                line = "; ".join(f"{h}: {c}" if h else c for h, c in zip(header or [""] * len(cells), cells) if c)
                self.out.append(f"\n\n{line}\n\n")
        elif tag == "table":
            self.table_header = []
        elif tag in _BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.title is not None:
            self.title.append(data)
        self._text(data)

    def _text(self, data: str) -> None:
        if self.skipping:
            return
        if self.cell is not None:
            self.cell.append(data)
        elif self.heading is not None:
            self.heading.append(data)
        elif self.title is None:
            self.out.append(data.replace("\n", " ") if data != "\n" else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._text("\n")


def html_sections(text: str, doc: str, where: str) -> list[Section]:
    """An HTML page as Markdown-like text (its h1–h6 as headings), then split like Markdown."""
    parser = _Html(where)
    parser.feed(text)
    parser.close()
    body = "".join(parser.out)
    body = re.sub(r"[ \t]+", " ", body)
    title = parser.page_title
    if title and not re.search(r"^\s*# ", body, re.M):
        body = f"# {html.unescape(title)}\n\n{body}"
    return markdown_sections(body, doc)
