"""Input unlike anything in the training text, made like it before search.

A model meets text the way its training corpora were written; people type
otherwise, and each difference below made the default model write nonsense.
`fit` makes a text like the training text and `Typed.restore` makes its
translation like the text again. What each is worth on the dev sets typed
that way: README, results (`scripts/benchmark.py typed`).

Set aside: SentencePiece spells a character outside its vocabulary as UTF-8
bytes, which the model never met ("Danke 😀" -> "Thank you for all the time.").
A symbol (Unicode category S*) without a piece of its own, with the marks that
belong to it (variation selectors, joiners, skin tones, keycaps), web and
e-mail addresses and emoticons (no training sentence has them;
"tom@example.com" -> "dead-fxx"), dates and phone numbers ("31.12.2026" ->
"December 312.22") are taken out and put back around the translation: those
before the words in front, all others after it. A symbol
the vocabulary has (°, €) stays; so does any letter.

The final stop: the corpora end almost every sentence with punctuation (all but
284 of the default model's 195,438), and a sentence without it came out padded
("Das ist gut" -> "That's good at this."). It is searched with a full stop,
which its translation drops again.

Case: every training sentence begins with a capital, and none is in capitals.
A first word in lower case is capitalised ("wie alt bist du?" -> "What old are
you?" before); a text in capitals is searched in lower case and its
translation put in capitals ("ICH HABE HUNGER" -> "ICAATANAS" before). Where no
word after the first has a capital (all in lower case, or lowered), a word gets
the capital the source vocabulary spells in fewer pieces ("bahnhof" three,
"Bahnhof" one): German nouns get theirs back. A model trained on text in lower
case (no capitals in its vocabulary) gets every text in lower case instead.

Spelled-out letters: German typed without ä, ö, ü, ß ("moechte", "Strasse") is
spelled with them where that takes fewer pieces, unless the text has one of
them already; "Feuer" stays, as "Feür" takes more.

Text without a letter ("...", "?", "123", "3,50 €") has no words to translate
and is kept as it is ("?" -> "Is it going to be?" before).

Spacing: a comma or semicolon between two letters gets its space ("Hallo,wie
geht es dir?" -> "Hey, anyway's it?" before).

Escapes: a model trained on a corpus with XML escapes ("stone &amp; tile" in
Multi30k's English, before `prepare` undid them) writes them ("Salz & Pfeffer"
-> "Salt &amp; peppers"); they are undone unless the text had some.

Numbers: the model reads a number as rare pieces and may write another one
("um 18:30 Uhr" -> "at 2:30"); a translation with as many runs of digits as
its source but other ones gets the source's, in order.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from seq2seq.data import XML_ESCAPE, unescape_xml

WORD = re.compile(r"\w+")
DIGITS = re.compile(r"\d+")
# letters typed spelled out where the keyboard lacks them, by source language
SPELLED_OUT = {
    "de": (
        ("ae", "ä"),
        ("oe", "ö"),
        ("ue", "ü"),
        ("Ae", "Ä"),
        ("Oe", "Ö"),
        ("Ue", "Ü"),
        ("ss", "ß"),
    )
}
RESPELL_MAX = 4  # spelled-out letters in one word that are tried (2^4 spellings)
CAPITALS_MIN = 4  # cased letters, all capitals, that make a text "in capitals" (not "USA")

# what may be a symbol: anything but letters, digits, spaces and common punctuation (most
# text has none, and then no character needs a look-up)
MAYBE_SYMBOL = re.compile(r"[^\w\s.,;:!?'\"()\[\]\-–—„“”‚‘’«»…/%&*]")
# set aside like unknown symbols, as no training sentence has them: web and e-mail addresses
# (without the punctuation after them) and emoticons such as :) ;-) :D <3
PASSED = re.compile(
    r"(?:https?://|www\.)\S*[^\s.,;:!?'\")\]]"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<!\S)(?:[:;=][-']?[)(\]\[DPpO/\\|*]+|<3+|\^\^|[xX]D)(?!\S)"
)
# and numbers the model garbles and no rule can mend ("31.12.2026" -> "December 312.22"):
# dates, and phone numbers (runs of digits, spaces, dashes, slashes with PHONE_DIGITS digits)
LONG_NUMBER = re.compile(
    r"(?<![\w.])\d{1,2}\.\d{1,2}\.\d{2,4}(?![\w.]\w)|(?<![\w+])\+?\d[\d /-]{5,}\d(?!\w)"
)
PHONE_DIGITS = 7
NO_SPACE_AFTER = re.compile(r"(?<=[^\W\d_])([,;])(?=[^\W\d_])")  # "Hallo,wie": "Hallo, wie"
LEFT_STOP = re.compile(r" ([.,;:!?)\]\"'”»]+)$")  # what ended the text after a set-aside address
# marks that belong to the symbol before them: text/emoji variation selectors, the
# zero-width joiner of emoji sequences, the keycap, skin tones
ATTACHED = frozenset("\ufe0e\ufe0f\u200d\u20e3") | frozenset(map(chr, range(0x1F3FB, 0x1F400)))


def set_aside(text: str, known: Callable[[str], bool]) -> tuple[str, str, str]:
    """(before, words, after): `text` without its unknown symbols, web addresses, e-mail
    addresses and emoticons, and those with the spaces that separated them, to go before
    and after its translation.

    known: whether the source vocabulary has a piece for a character.
    """
    passed = [match.span() for match in PASSED.finditer(text)] + [
        match.span()
        for match in LONG_NUMBER.finditer(text)
        if "." in match[0] or sum(char.isdigit() for char in match[0]) >= PHONE_DIGITS
    ]
    if not passed and not MAYBE_SYMBOL.search(text):
        return "", text, ""
    aside = [False] * len(text)
    for i, char in enumerate(text):
        if char in ATTACHED:
            aside[i] = i > 0 and aside[i - 1]
        elif unicodedata.category(char).startswith("S"):
            aside[i] = not known(char)
    for start, end in passed:
        aside[start:end] = [True] * (end - start)
    if not any(aside):
        return "", text, ""
    start, end = 0, len(text)
    while start < end and (aside[start] or text[start].isspace()):
        start += 1
    while end > start and (aside[end - 1] or text[end - 1].isspace()):
        end -= 1
    words = " ".join("".join(" " if aside[i] else text[i] for i in range(start, end)).split())
    moved = "".join(text[i] if aside[i] else " " for i in range(start, end)).split()
    stop = LEFT_STOP.search(words)  # "ist tom@x.de.": the full stop goes after the address
    tail = stop[1] if stop else ""
    words = words[: stop.start()] if stop else words
    return text[:start], words, "".join(" " + m for m in moved) + tail + text[end:]


def add_stop(words: str) -> tuple[str, bool]:
    """`words` with a full stop where they end in a letter or digit (trailing whitespace
    aside); whether one was added."""
    words = words.rstrip()
    if words and words[-1].isalnum():
        return words + ".", True
    return words, False


def drop_stop(text: str) -> str:
    """A translation without the full stop its source was given (an ellipsis stays)."""
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def in_capitals(words: str) -> bool:
    """Whether all letters of `words`, at least CAPITALS_MIN of them, are capitals."""
    if not words.isupper():  # some cased letter is not a capital, or there is none
        return False
    return sum(char.lower() != char for char in words) >= CAPITALS_MIN


def fewer_pieces(
    words: str, variants: Callable[[str], list[str]], pieces: Callable[[list[str]], list[int]]
) -> str:
    """`words` with each word replaced by its variant (`variants(word)`) that the vocabulary
    spells in the fewest pieces, where that is fewer than the word itself takes.

    pieces: how many pieces each of a list of words takes.
    """
    options = {word: variants(word) for word in set(WORD.findall(words))}
    options = {word: found for word, found in options.items() if found}
    every = [*options, *(variant for found in options.values() for variant in found)]
    count = dict(zip(every, pieces(every)))
    best = {word: min(found, key=count.__getitem__) for word, found in options.items()}
    best = {word: variant for word, variant in best.items() if count[variant] < count[word]}
    return WORD.sub(lambda match: best.get(match[0], match[0]), words)


def capitalised(word: str) -> list[str]:
    """A word in lower case with a capital."""
    return [word.capitalize()] if word.islower() else []


def respelled(word: str, spellings: tuple[tuple[str, str], ...]) -> list[str]:
    """Every way of writing `word` with some of its spelled-out letters (ae, oe, ue, ss in
    German) in their own letter (ä, ö, ü, ß), at most RESPELL_MAX of them."""
    letter = dict(spellings)
    parts = re.split(f"({'|'.join(letter)})", word)  # odd indices: the spelled-out letters
    if len(parts) == 1 or len(parts) // 2 > RESPELL_MAX:
        return []
    choices = [[part, letter[part]] if i % 2 else [part] for i, part in enumerate(parts)]
    return ["".join(chosen) for chosen in itertools.product(*choices)][1:]  # [0]: the word


def sentence_case(words: str) -> str:
    """`words` with a capital on the first word where it is all in lower case ("iPhone" is
    left alone), as every training sentence begins."""
    first = words.split(maxsplit=1)[0] if words.strip() else ""
    start = next((i for i, char in enumerate(words) if char.isalpha()), None)
    if start is not None and first.islower():
        words = words[:start] + words[start].upper() + words[start + 1 :]
    return words


def copy_numbers(translation: str, numbers: tuple[str, ...]) -> str:
    """`translation` with its runs of digits those of its source, in order, where it has as
    many runs but other ones ("um 18:30 Uhr" -> "at 2:30"): a model reads a number as pieces
    it saw rarely and writes others. Runs in another order (reordered) or in another count
    (a number written out, "17 Jahre" -> "seventeen") are left as they are."""
    found = DIGITS.findall(translation)
    if len(found) != len(numbers) or sorted(found) == sorted(numbers):
        return translation
    source = iter(numbers)
    return DIGITS.sub(lambda _: next(source), translation)


@dataclass(frozen=True)
class Typed:
    """How a text differed from the training text, undone on its translation."""

    before: str = ""  # what was set aside in front of the words
    after: str = ""  # and after them
    stop: bool = False  # a full stop was added
    capitals: bool = False  # it was in capitals
    numbers: tuple[str, ...] = ()  # its runs of digits
    escapes: bool = False  # it had XML escapes (&amp;), so its translation may too

    def restore(self, translation: str) -> str:
        """The translation as the text was typed."""
        translation = copy_numbers(translation, self.numbers)
        if not self.escapes:
            translation = unescape_xml(translation)
        if self.stop:
            translation = drop_stop(translation)
        if self.capitals:
            translation = translation.upper()
        return self.before + translation + self.after


@dataclass(frozen=True)
class Source:
    """What `fit` asks of the source side: its language and its vocabulary."""

    lang: str
    known: Callable[[str], bool]  # whether the vocabulary has a piece for a character
    pieces: Callable[[list[str]], list[int]]  # how many pieces each of a list of words takes
    cased: bool = True  # whether the vocabulary has capitals (False: lower-cased training text)


def fit(text: str, source: Source) -> tuple[str, Typed]:
    """The words to search for `text`, made like the training text, and how to undo it."""
    before, words, after = set_aside(text, source.known)
    if not any(char.isalpha() for char in words):  # "...", "?", "123": no words to translate
        return "", Typed(before=text)
    words = NO_SPACE_AFTER.sub(r"\1 ", words)
    capitals = in_capitals(words)
    if capitals or not source.cased:
        words = words.lower()
    spellings = SPELLED_OUT.get(source.lang)
    if spellings and not any(letter in words for _, letter in spellings):  # no such keys
        words = fewer_pieces(words, lambda word: respelled(word, spellings), source.pieces)
    if source.cased:
        if not any(char.isupper() for char in words.partition(" ")[2]):  # nouns' capitals lost
            words = fewer_pieces(words, capitalised, source.pieces)
        words = sentence_case(words)
    words, stop = add_stop(words)
    numbers = tuple(DIGITS.findall(words))
    return words, Typed(before, after, stop, capitals, numbers, bool(XML_ESCAPE.search(text)))
