import pytest

from seq2seq.unseen import (
    SPELLED_OUT,
    Source,
    Typed,
    add_stop,
    capitalised,
    copy_numbers,
    drop_stop,
    fewer_pieces,
    fit,
    in_capitals,
    respelled,
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
        ("Das ist super :)", ("", "Das ist super", " :)")),  # emoticons, as no sentence has
        ("Bis später ;-) Tom", ("", "Bis später Tom", " ;-)")),
        ("Mail an tom@example.com.", ("", "Mail an", " tom@example.com.")),  # stop after it
        ("Siehe https://x.org/a_b?c=1).", ("", "Siehe", " https://x.org/a_b?c=1).")),
        ("www.example.de ist gut", ("www.example.de ", "ist gut", "")),
        ("Das Verhältnis ist 3:2.", ("", "Das Verhältnis ist 3:2.", "")),  # no emoticon
        ("Es endet am 31.12.2026.", ("", "Es endet am", " 31.12.2026.")),  # a date
        ("Ruf 0176 1234567 an", ("", "Ruf an", " 0176 1234567")),  # a phone number
        ("Etwa 300 000 km", ("", "Etwa 300 000 km", "")),  # too few digits: a number
    ],
)
def test_what_no_training_sentence_has_is_set_aside_with_its_spacing(text, parts):
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


SPELLED = {"Bahnhof": 1, "Hunger": 1, "essen": 1, "Essen": 1, "möchte": 1, "Straße": 1}


def pieces(words: list[str]) -> list[int]:
    """A vocabulary that spells a few words in one piece, and everything else in three."""
    return [SPELLED.get(word, 3) for word in words]


def test_a_word_is_given_the_capital_the_vocabulary_spells_in_fewer_pieces():
    recased = fewer_pieces("wo ist der bahnhof? ich habe hunger", capitalised, pieces)
    assert recased == "wo ist der Bahnhof? ich habe Hunger"
    assert fewer_pieces("wir essen", capitalised, pieces) == "wir essen"  # a tie: as typed


def test_spelled_out_letters_are_tried_in_every_combination():
    spellings = SPELLED_OUT["de"]
    assert respelled("Strasse", spellings) == ["Straße"]
    assert sorted(respelled("Gruesse", spellings)) == ["Grueße", "Grüsse", "Grüße"]
    assert respelled("Haus", spellings) == []
    assert fewer_pieces("ich moechte die Strasse", lambda w: respelled(w, spellings), pieces) == (
        "ich möchte die Straße"
    )


SOURCE = Source("de", known, pieces)


def test_fit_makes_typed_text_like_the_training_text_and_restore_undoes_it():
    words, typed = fit("😀 WO IST DER BAHNHOF 👍", SOURCE)
    assert words == "Wo ist der Bahnhof."
    assert typed.restore("Where is the station.") == "😀 WHERE IS THE STATION 👍"
    assert fit("ich habe hunger", SOURCE)[0] == "Ich habe Hunger."
    assert fit("Ich habe hunger", SOURCE)[0] == "Ich habe Hunger."  # a first capital only
    assert fit("Ich habe hunger, Tom", SOURCE)[0] == "Ich habe hunger, Tom."  # cased: as typed
    assert fit("ich moechte", SOURCE)[0] == "Ich möchte."
    assert fit("Hallo,wie geht es dir?", SOURCE)[0] == "Hallo, wie geht es dir?"
    assert fit("3,5 Liter", SOURCE)[0] == "3,5 Liter."  # a decimal comma stays
    assert fit("Schön, ich moechte", SOURCE)[0] == "Schön, ich moechte."  # has an umlaut key
    assert fit("ich moechte", Source("en", known, pieces))[0] == "Ich moechte."  # German only
    words, typed = fit("Wie geht es dir?", SOURCE)
    assert (words, typed) == ("Wie geht es dir?", Typed())
    assert typed.restore("How are you?") == "How are you?"


@pytest.mark.parametrize(
    ("translation", "numbers", "copied"),
    [
        ("We'll meet at 2:30.", ("18", "30"), "We'll meet at 18:30."),
        ("That was in 1999.", ("1989",), "That was in 1989."),
        ("between 10 and 5", ("5", "10"), "between 10 and 5"),  # reordered: as it is
        ("She is seventeen.", ("17",), "She is seventeen."),  # written out: as it is
        ("Call 11 now", ("0176", "1234567"), "Call 11 now"),  # another count: as it is
    ],
)
def test_numbers_are_copied_from_the_source_where_the_model_wrote_others(
    translation, numbers, copied
):
    assert copy_numbers(translation, numbers) == copied


def test_fit_notes_the_numbers_and_restore_copies_them():
    words, typed = fit("um 18:30 uhr", SOURCE)
    assert typed.numbers == ("18", "30")
    assert typed.restore("at 2:30.") == "at 18:30"


def test_a_model_trained_on_lower_case_text_gets_every_text_in_lower_case():
    lowered = Source("de", known, pieces, cased=False)
    assert fit("Wo ist der Bahnhof", lowered)[0] == "wo ist der bahnhof."
    words, typed = fit("ICH HABE HUNGER", lowered)
    assert words == "ich habe hunger." and typed.capitals


def test_xml_escapes_a_model_learnt_are_undone_unless_the_text_had_them():
    # a model trained on Multi30k before prepare undid its escapes wrote "Salt &amp; peppers"
    assert fit("Salz & Pfeffer.", SOURCE)[1].restore("Salt &amp; pepper.") == "Salt & pepper."
    words, typed = fit("Salz &amp; Pfeffer.", SOURCE)
    assert typed.restore("Salt &amp; pepper.") == "Salt &amp; pepper."


@pytest.mark.parametrize("text", ["...", "?", "123", "3,50 €", " 😀 ", ""])
def test_text_without_a_letter_is_kept_as_it_is(text):
    words, typed = fit(text, SOURCE)  # "?" was "Is it going to be?", "123" "The 123"
    assert words == "" and typed.restore("") == text
