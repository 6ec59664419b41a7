import pytest
import torch
from helpers import WORDS_DE, WORDS_EN, make_pairs

from seq2seq.data import pad, read_parallel
from seq2seq.shortlist import (
    COLUMNS_MULTIPLE,
    PER_WORD,
    Shortlist,
    ShortlistError,
    build_shortlist,
    translation_table,
)
from seq2seq.tokenizer import EOS_ID, PAD_ID, UNK_ID, Tokenizer


def test_model1_learns_the_word_for_word_translations():
    de, en = sorted(set(WORDS_DE)), sorted(set(WORDS_EN))
    pairs = make_pairs(400)
    src = [[de.index(w) for w in s.split()] for s, _ in pairs]
    tgt = [[en.index(w) for w in t.split()] for _, t in pairs]
    batches = [(pad(src[i : i + 50], -1), pad(tgt[i : i + 50], -1)) for i in range(0, 400, 50)]
    table = translation_table(batches, len(de), len(en))
    assert table.shape == (len(de) + 1, len(en))  # the last row: NULL
    assert torch.allclose(table.sum(dim=1), torch.ones(len(de) + 1))
    for word_de, word_en in zip(WORDS_DE, WORDS_EN):
        assert en[int(table[de.index(word_de)].argmax())] == word_en, word_de


def test_built_shortlist_copies_pieces_and_maps_special_ids_to_eos(tiny_prepared):
    src = Tokenizer.from_file(tiny_prepared / "spm.de.model")
    tgt = Tokenizer.from_file(tiny_prepared / "spm.en.model")
    pairs = read_parallel(tiny_prepared / "train.de", tiny_prepared / "train.en")
    stored = build_shortlist(pairs, src, tgt)
    translations = stored["translations"]
    assert translations.shape == (src.vocab_size, PER_WORD + 1)
    assert (translations[: EOS_ID + 1] == EOS_ID).all()
    pieces = src.pieces(list(range(EOS_ID + 1, src.vocab_size)))
    same = dict(zip(pieces, tgt.piece_ids(pieces)))
    shared = {piece: i for piece, i in same.items() if i != UNK_ID}
    assert shared  # single letters at least
    for piece, tgt_id in shared.items():  # a piece the target has is its own first candidate
        assert translations[src.piece_ids([piece])[0], 0] == tgt_id
    assert tgt.encode(["the"])[0][0] in stored["frequent"].tolist()


def test_columns_are_the_allowed_ids_sorted_and_padded_to_a_block():
    translations = torch.full((8, 3), EOS_ID, dtype=torch.int32)
    translations[5] = torch.tensor([10, 11, 10])
    translations[6] = torch.tensor([12, 13, 14])
    shortlist = Shortlist({"translations": translations, "frequent": torch.tensor([20])}, 8, 200)
    columns, _ = shortlist.restrict(torch.tensor([[5, 5, EOS_ID], [5, EOS_ID, PAD_ID]]))
    allowed = {10, 11, 20, UNK_ID, EOS_ID}
    padding = [i for i in range(200) if i not in allowed][: COLUMNS_MULTIPLE - len(allowed)]
    assert columns.tolist() == sorted(allowed | set(padding))  # 12-14 only as padding
    small = Shortlist({"translations": translations, "frequent": torch.tensor([20])}, 8, 21)
    assert small.restrict(torch.tensor([[5]]))[0].tolist() == list(range(21))  # all there is


def test_each_source_is_allowed_its_own_pieces_only():
    translations = torch.full((8, 3), EOS_ID, dtype=torch.int32)
    translations[5] = torch.tensor([10, 11, 10])
    translations[6] = torch.tensor([12, 13, 14])
    shortlist = Shortlist({"translations": translations, "frequent": torch.tensor([20])}, 8, 200)
    src_ids = torch.tensor([[5, 5, EOS_ID], [6, EOS_ID, PAD_ID]])
    columns, allowed = shortlist.restrict(src_ids)
    assert allowed.shape == (2, len(columns))
    own = [set(columns[row].tolist()) for row in allowed]
    assert own == [{10, 11, 20, UNK_ID, EOS_ID}, {12, 13, 14, 20, UNK_ID, EOS_ID}]


@pytest.mark.parametrize(
    "stored",
    [
        {"translations": torch.zeros(7, 2, dtype=torch.int32), "frequent": torch.tensor([1])},
        {"translations": torch.full((8, 2), 300, dtype=torch.int32), "frequent": torch.tensor([1])},
        {"translations": torch.zeros(8, 2, dtype=torch.int32)},
        [1, 2],
    ],
)
def test_a_shortlist_that_does_not_fit_the_model_is_refused(stored):
    with pytest.raises(ShortlistError):
        Shortlist(stored, 8, 200)
