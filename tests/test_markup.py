import pytest

from seq2seq.markup import Page


def shout(texts: list[str]) -> list[str]:
    return [text.upper() for text in texts]


def test_the_text_between_the_tags_is_translated_and_the_tags_kept():
    page = Page('<p class="x">Ein <b>Hund</b> läuft.</p>\n<img src="a.png" alt="Hund"/>')
    assert page.texts == ["Ein ", "Hund", " läuft."]
    assert page.join(shout(page.texts)) == (
        '<p class="x">EIN <b>HUND</b> LÄUFT.</p>\n<img src="a.png" alt="Hund"/>'
    )


@pytest.mark.parametrize(
    "html",
    [
        "<script>if (a < b) { x = '&amp;'; }</script>",  # code as it was
        "<style>p > b { color: red }</style>",
        "<pre>Der Hund</pre><code>der_hund()</code>",  # not prose
        "<!-- ein Kommentar --><br>",
        "",
    ],
)
def test_what_is_not_prose_is_kept_as_it_was(html):
    page = Page(html)
    assert page.texts == []
    assert page.join([]) == html


def test_entities_are_read_as_text_and_written_escaped():
    page = Page("<p>Tom &amp; Maria &lt;3 &nbsp;</p>")
    assert page.texts == ["Tom & Maria <3 \xa0"]
    assert page.join(["Tom & Mary <3 \xa0"]) == "<p>Tom &amp; Mary &lt;3 \xa0</p>"
