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
its translation loses the full stop again (README: what it is worth).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

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
