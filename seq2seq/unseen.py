"""Input unlike anything in the training text, made like it before search.

Symbols: SentencePiece spells a character outside its vocabulary as UTF-8
bytes, and a model that never met those bytes in training makes things up
around them: the default model turned "Danke 😀" into "Thank you for all the
time." So a symbol (Unicode category S*) without a piece of its own is taken
out of the sentence before search, together with the marks that belong to it
(emoji variation selectors, joiners, skin tones, keycaps), and put back around
the translation: those before the words in front, all others after it. A
symbol the vocabulary has (°, €) stays in the sentence; so does any letter.

The final stop: the training corpora end almost every sentence with
punctuation (all but 284 of the default model's 195,438), and a sentence typed
without it came out padded ("Das ist gut" -> "That's good at this."). A
sentence that ends in a letter or digit gets a full stop for the search, and
its translation loses the full stop again.

Case: every training sentence begins with a capital, and none is in capitals.
A first word typed in lower case ("wie alt bist du?" -> "What old are you?")
is capitalised; a text in capitals ("ICH HABE HUNGER" -> "ICAATANAS") is
searched in lower case and its translation put in capitals. Where no word
after the first has a capital (typed all in lower case, or lowered from
capitals), German nouns have lost theirs: a word is given a capital where the
source vocabulary spells it so in fewer pieces ("bahnhof" takes three pieces,
"Bahnhof" one), the casing the tokenizer was trained on more often.
What each is worth, on the dev sets typed that way: README, results.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

WORD = re.compile(r"\w+")
CAPITALS_MIN = 4  # cased letters, all capitals, that make a text "in capitals" (not "USA")

# marks that belong to the symbol before them: text/emoji variation selectors, the
# zero-width joiner of emoji sequences, the keycap, skin tones
ATTACHED = frozenset("\ufe0e\ufe0f\u200d\u20e3") | frozenset(map(chr, range(0x1F3FB, 0x1F400)))


def set_aside(text: str, known: Callable[[str], bool]) -> tuple[str, str, str]:
    """(before, words, after): `text` without its unknown symbols, and those symbols with
    the spaces that separated them, to go before and after its translation.

    known: whether the source vocabulary has a piece for a character.
    """
    aside = [False] * len(text)
    for i, char in enumerate(text):
        if char in ATTACHED:
            aside[i] = i > 0 and aside[i - 1]
        elif unicodedata.category(char).startswith("S"):
            aside[i] = not known(char)
    if not any(aside):
        return "", text, ""
    start, end = 0, len(text)
    while start < end and (aside[start] or text[start].isspace()):
        start += 1
    while end > start and (aside[end - 1] or text[end - 1].isspace()):
        end -= 1
    words = "".join(" " if aside[i] else text[i] for i in range(start, end))
    moved = "".join(text[i] if aside[i] else " " for i in range(start, end)).split()
    return text[:start], " ".join(words.split()), "".join(" " + m for m in moved) + text[end:]


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
    cased = [char for char in words if char.lower() != char.upper()]
    return len(cased) >= CAPITALS_MIN and all(char.isupper() for char in cased)


def recase(words: str, pieces: Callable[[list[str]], list[int]]) -> str:
    """`words` with a capital on each word in lower case that the vocabulary spells in
    fewer pieces with one. pieces: how many pieces each of a list of words takes."""
    lower = sorted({word for word in WORD.findall(words) if word.islower()})
    counts = pieces(lower + [word.capitalize() for word in lower])
    capital = {w for w, a, b in zip(lower, counts, counts[len(lower) :]) if b < a}
    return WORD.sub(lambda m: m[0].capitalize() if m[0] in capital else m[0], words)


def sentence_case(words: str) -> str:
    """`words` with a capital on the first word where it is all in lower case ("iPhone" is
    left alone), as every training sentence begins."""
    first = words.split(maxsplit=1)[0] if words.strip() else ""
    start = next((i for i, char in enumerate(words) if char.isalpha()), None)
    if start is not None and first.islower():
        words = words[:start] + words[start].upper() + words[start + 1 :]
    return words


@dataclass(frozen=True)
class Typed:
    """How a text differed from the training text, undone on its translation."""

    before: str = ""  # symbols set aside in front
    after: str = ""  # and after
    stop: bool = False  # a full stop was added
    capitals: bool = False  # it was in capitals

    def restore(self, translation: str) -> str:
        """The translation as the text was typed."""
        if self.stop:
            translation = drop_stop(translation)
        if self.capitals:
            translation = translation.upper()
        return self.before + translation + self.after


def fit(
    text: str, known: Callable[[str], bool], pieces: Callable[[list[str]], list[int]]
) -> tuple[str, Typed]:
    """The words to search for `text`, made like the training text, and how to undo it.

    known: whether the source vocabulary has a piece for a character; pieces: how many
    pieces each of a list of words takes.
    """
    before, words, after = set_aside(text, known)
    capitals = in_capitals(words)
    if capitals:
        words = words.lower()
    if not any(char.isupper() for char in words.partition(" ")[2]):  # the nouns' capitals lost
        words = recase(words, pieces)
    words, stop = add_stop(sentence_case(words))
    return words, Typed(before, after, stop, capitals)
