import pytest

from seq2seq.unseen import (
    Typed,
    add_stop,
    drop_stop,
    fit,
    in_capitals,
    recase,
    sentence_case,
    set_aside,
)


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


@pytest.mark.parametrize(
    ("words", "begun"),
    [
        ("wie alt bist du?", "Wie alt bist du?"),
        ("Wie alt bist du?", "Wie alt bist du?"),
        ("„ja“, sagte er", "„Ja“, sagte er"),  # the first letter, not the first character
        ("iPhone ist teuer", "iPhone ist teuer"),  # a name's own case stays
        ("12:30", "12:30"),
    ],
)
def test_a_sentence_begins_with_a_capital(words, begun):
    assert sentence_case(words) == begun


def test_capitals_are_all_letters_in_capitals_and_at_least_four():
    assert in_capitals("ICH HABE HUNGER!") and in_capitals("NEIN!")
    assert not in_capitals("USA") and not in_capitals("Ich war in den USA")


def pieces(words: list[str]) -> list[int]:
    """A vocabulary that spells these nouns in one piece with their capital, in three without."""
    nouns = {"Bahnhof", "Hunger", "Essen"}
    return [
        1 if w in nouns or w == "essen" else 3 if w.lower().capitalize() in nouns else 1
        for w in words
    ]


def test_a_word_is_given_the_capital_the_vocabulary_spells_in_fewer_pieces():
    assert recase("wo ist der bahnhof? ich habe hunger", pieces) == (
        "wo ist der Bahnhof? ich habe Hunger"
    )
    assert recase("wir essen", pieces) == "wir essen"  # as few pieces either way: as typed


def test_fit_makes_typed_text_like_the_training_text_and_restore_undoes_it():
    words, typed = fit("😀 WO IST DER BAHNHOF 👍", known, pieces)
    assert words == "Wo ist der Bahnhof."
    assert typed.restore("Where is the station.") == "😀 WHERE IS THE STATION 👍"
    assert fit("ich habe hunger", known, pieces)[0] == "Ich habe Hunger."
    assert fit("Ich habe hunger", known, pieces)[0] == "Ich habe Hunger."  # a first capital only
    assert fit("Ich habe hunger, Tom", known, pieces)[0] == "Ich habe hunger, Tom."  # cased: kept
    words, typed = fit("Wie geht es dir?", known, pieces)
    assert (words, typed) == ("Wie geht es dir?", Typed())
    assert typed.restore("How are you?") == "How are you?"
