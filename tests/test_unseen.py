import pytest

from seq2seq.unseen import add_stop, drop_stop, set_aside


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


@pytest.mark.parametrize(
    ("words", "searched"),
    [
        ("Das ist gut", ("Das ist gut.", True)),
        ("Wie geht es dir", ("Wie geht es dir.", True)),  # a question without its mark too
        ("Seite 12", ("Seite 12.", True)),
        ("Das ist gut\n", ("Das ist gut.", True)),  # a line as read, with its newline
        ("Das ist gut.", ("Das ist gut.", False)),
        ("Wo ist er?", ("Wo ist er?", False)),
        ('Er sagte "ja"', ('Er sagte "ja"', False)),  # a closing quote may end a sentence
        ("", ("", False)),
    ],
)
def test_a_sentence_without_final_punctuation_is_searched_with_a_full_stop(words, searched):
    assert add_stop(words) == searched


def test_the_translation_drops_the_full_stop_it_was_given_but_not_an_ellipsis():
    assert drop_stop("That's good.") == "That's good"
    assert drop_stop("How are you?") == "How are you?"
    assert drop_stop("Wait...") == "Wait..."
