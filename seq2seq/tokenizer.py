"""SentencePiece subword models: train, load (from a file or bytes), encode, decode.

Special ids are fixed for every model the project trains, so a model file
never has to say which id is padding.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm

from seq2seq.errors import Seq2SeqError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

_threads = os.cpu_count() or 1  # SentencePiece threads; `set_threads` changes it


def set_threads(count: int) -> None:
    """Threads SentencePiece may use (training, encoding, decoding); the `--threads` setting."""
    global _threads
    _threads = max(count, 1)


class TokenizerError(Seq2SeqError):
    """SentencePiece could not train (e.g. a vocabulary too small for the text)."""


def train_tokenizer(
    files: list[str | Path],
    model_path: str | Path,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    sample_size: int = 300_000,
    seed: int = 1,
) -> Path:
    """Train a SentencePiece model on text files and write it to `model_path`.

    SentencePiece reads at most `sample_size` sentences (a seeded random
    sample), so memory stays bounded on corpora of millions of pairs.

    Args:
        files: one sentence per line, already cleaned.
        model_path: where `NAME.model` goes.
        vocab_size: number of pieces, special ids and the 256 byte pieces included.
        model_type: "bpe" or "unigram".
        character_coverage: share of characters covered by single pieces.
        sample_size: sentences sampled for training.
        seed: SentencePiece's random seed (for the sample).

    Returns:
        The path of the written model.
    """
    model_path = Path(model_path)
    spm.set_random_generator_seed(seed)
    try:
        _train(files, model_path, vocab_size, model_type, character_coverage, sample_size)
    except RuntimeError as error:
        reason = str(error).split("] ")[-1].strip()
        raise TokenizerError(f"SentencePiece on {files[0]}: {reason}") from None
    return model_path


def _lines(files: list[str | Path]) -> Iterator[str]:
    for path in files:
        with open(path, encoding="utf-8") as f:
            yield from (line.rstrip("\n") for line in f)


def _train(files, model_path, vocab_size, model_type, character_coverage, sample_size) -> None:
    # Fed by an iterator and written to memory, so that no file path ends up in
    # the model and re-running with the same text gives the same bytes.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_lines(files),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        # no NFKC: decode(encode(x)) must give x back; data.clean already did NFC
        normalization_rule_name="identity",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=sample_size,
        shuffle_input_sentence=True,
        num_threads=_threads,
        hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary, not an error
        minloglevel=2,
    )
    model_path.write_bytes(model.getvalue())


class Tokenizer:
    """A loaded SentencePiece model; keeps its bytes for model files."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model_bytes = model_bytes
        self._sp = spm.SentencePieceProcessor(model_proto=model_bytes)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a `.model` file."""
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        """Number of pieces, special ids included."""
        return self._sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Piece ids of each text, without BOS/EOS."""
        return self._sp.encode(texts, num_threads=_threads)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Texts from piece ids; special ids are dropped."""
        return self._sp.decode(
            [[i for i in seq if i > EOS_ID] for seq in ids],
            num_threads=_threads,
        )

    def pieces(self, ids: list[int]) -> list[str]:
        """Readable pieces, for attention plots."""
        return [self._sp.id_to_piece(i) for i in ids]

    def piece_ids(self, pieces: list[str]) -> list[int]:
        """The id of each piece; UNK_ID for a piece not in the vocabulary."""
        return [self._sp.piece_to_id(piece) for piece in pieces]
