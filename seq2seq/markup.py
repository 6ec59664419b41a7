"""HTML in, HTML out: the text between the tags is translated, the tags kept.

For the server's `format: html` (LibreTranslate's, which browser extensions
send for a page): each run of text between two tags is one text to translate,
so a sentence split by inline markup ("Ein <b>Hund</b> läuft.") is translated
in parts, as LibreTranslate's own translator does too. Scripts, styles,
comments, `pre` and `code` are kept as they were.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser

NOT_PROSE = frozenset({"script", "style", "pre", "code", "textarea"})


class Page(HTMLParser):
    """An HTML text split into markup and the texts to translate."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str | None] = []  # markup as it was; None: the next text
        self.texts: list[str] = []
        self._inside: list[str] = []  # open NOT_PROSE elements
        self.feed(html)
        self.close()

    def join(self, translations: list[str]) -> str:
        """The HTML with each text replaced by its translation, in order."""
        given = iter(translations)
        return "".join(escape(next(given), quote=False) if p is None else p for p in self.parts)

    def handle_starttag(self, tag: str, attrs) -> None:
        self.parts.append(self.get_starttag_text())
        if tag in NOT_PROSE:
            self._inside.append(tag)

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.parts.append(self.get_starttag_text())

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")
        if tag in self._inside:
            del self._inside[len(self._inside) - 1 - self._inside[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self._inside or not any(char.isalnum() for char in data):
            raw = self._inside and self._inside[-1] in ("script", "style")  # not escaped
            self.parts.append(data if raw else escape(data, quote=False))
        else:
            self.parts.append(None)
            self.texts.append(data)

    def handle_comment(self, data: str) -> None:
        self.parts.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.parts.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.parts.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.parts.append(f"<![{data}]>")
