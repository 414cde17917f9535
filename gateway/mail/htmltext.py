"""HTML bodies as readable text (for an email whose only body is HTML).  Pure.

Paragraphs, headings, lists, tables and quotes get a blank line; divs, rows and list items a
line break (items start with ``- ``); ``head``, ``script``, ``style`` and the like are dropped;
entities are decoded; whitespace collapses except inside ``pre``; links keep their text.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["html_to_text"]


_SKIP_TAGS = frozenset({"head", "script", "style", "title", "noscript", "template"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "hr"}
)
_LINE_TAGS = frozenset(
    {"div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "address"}
    | {"figure", "main", "nav", "aside", "center", "caption", "form", "fieldset"}
)
_SPACES = re.compile(r"\s+")


class _TextMaker(HTMLParser):
    """Collects the readable text of an HTML document (see :func:`html_to_text`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._breaks = 0  # line breaks owed before the next text
        self._skip = 0  # depth inside elements whose content is not text
        self._pre = 0  # depth inside <pre>, where white space is kept

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "body":  # a <head> left open ends here
            self._skip = 0
        elif tag == "br":
            self._breaks = min(self._breaks + 1, 2)
        elif tag in ("td", "th"):
            self.handle_data(" ")
        self._pre += tag == "pre"
        self._block(tag)
        if tag == "li" and not self._skip:
            self._write("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        self._block(tag)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self._write(data)
            return
        text = _SPACES.sub(" ", data)
        if text.strip():
            self._write(text)
        elif not self._breaks and self.chunks and not self.chunks[-1].endswith((" ", "\n")):
            self.chunks.append(" ")

    def _block(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._breaks = 2
        elif tag in _LINE_TAGS:
            self._breaks = max(self._breaks, 1)

    def _write(self, text: str) -> None:
        if self._breaks and self.chunks:
            self.chunks.append("\n" * self._breaks)
        self._breaks = 0
        if not self._pre and (not self.chunks or self.chunks[-1].endswith((" ", "\n"))):
            text = text.lstrip(" ")
        if text:
            self.chunks.append(text)

    def text(self) -> str:
        lines = "".join(self.chunks).split("\n")
        return "\n".join(line.rstrip() for line in lines).strip("\n")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, for agents and for search.

    Block elements become line breaks (paragraphs, headings, lists and tables a blank line),
    ``<br>`` a line break, list items ``- ``; head, scripts and styles are dropped; entities
    are decoded; white space is collapsed except inside ``<pre>``.  Links keep only their text.
    """
    maker = _TextMaker()
    try:
        maker.feed(html)
        maker.close()
    except AssertionError:  # html.parser's answer to some malformed "<![...]>" declarations
        without = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
        text = unescape(re.sub(r"<[^>]*>", " ", without))
        return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return maker.text()


# -- loop guard and userData -----------------------------------------------------------------
