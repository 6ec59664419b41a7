import pytest

from seq2seq.symbols import set_aside


def known(char: str) -> bool:
    return char in "°€"  # a vocabulary that has these two symbols, and no emoji


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("Danke 😀", ("", "Danke", " 😀")),
        ("Danke😀", ("", "Danke", "😀")),
        ("😀 Hallo", ("😀 ", "Hallo", "")),
        ("Wir 👍 sehen uns", ("", "Wir sehen uns", " 👍")),  # inner symbols go after
        ("Wir 👍 sehen 😀", ("", "Wir sehen", " 👍 😀")),
        ("Gute Nacht ❤️", ("", "Gute Nacht", " ❤️")),  # with its variation selector
        ("x 👨‍👩‍👧 y", ("", "x y", " 👨‍👩‍👧")),  # a joined family is one symbol
        ("😀 😊", ("😀 😊", "", "")),  # nothing to translate
        ("20 °C, 5 €", ("", "20 °C, 5 €", "")),  # symbols the vocabulary has stay
        ("1️⃣ Punkt", ("", "1️⃣ Punkt", "")),  # a digit's keycap is the digit's
        ("Straße 1½", ("", "Straße 1½", "")),  # letters and numbers always stay
    ],
)
def test_unknown_symbols_are_set_aside_with_their_spacing(text, parts):
    assert set_aside(text, known) == parts
    kept = "".join(parts)  # nothing is lost, only moved
    assert sorted(kept.replace(" ", "")) == sorted(text.replace(" ", ""))
