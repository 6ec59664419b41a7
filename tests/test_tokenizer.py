import pytest
from helpers import make_pairs

from seq2seq import tokenizer
from seq2seq.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    TokenizerError,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    text = folder / "train.txt"
    text.write_text("".join(p[0] + "\n" for p in make_pairs(300)) + "Straße über Ärger\n")
    return train_tokenizer([text], folder / "spm.model", vocab_size=300)


def test_special_ids_are_fixed(trained):
    tok = Tokenizer.from_file(trained)
    assert [tok.pieces([i])[0] for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    ]


def test_round_trip_and_unseen_characters(trained):
    tok = Tokenizer.from_file(trained)
    texts = ["der hund läuft im park", "Straße über Ärger", "ganz neu: 東京 ✓"]
    assert tok.decode(tok.encode(texts)) == texts  # byte fallback: nothing is lost
    assert tok.decode([[BOS_ID, *tok.encode(["der hund"])[0], EOS_ID, PAD_ID]]) == ["der hund"]


def test_bytes_and_file_load_the_same_model(trained):
    from_file, from_bytes = Tokenizer.from_file(trained), Tokenizer(trained.read_bytes())
    assert from_file.encode(["der mann"]) == from_bytes.encode(["der mann"])
    assert from_bytes.model_bytes == trained.read_bytes()


def test_training_is_deterministic(trained, tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("".join(p[0] + "\n" for p in make_pairs(300)) + "Straße über Ärger\n")
    again = train_tokenizer([text], tmp_path / "again.model", vocab_size=300)
    assert again.read_bytes() == trained.read_bytes()


def test_a_vocabulary_too_small_is_one_line(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghijklmnopqrstuvwxyz äöü\n" * 10)
    with pytest.raises(TokenizerError, match="SentencePiece on .*t.txt") as error:
        train_tokenizer([text], tmp_path / "m.model", vocab_size=8)
    assert "\n" not in str(error.value)


def test_threads_are_at_least_one():
    before = tokenizer._threads
    try:
        tokenizer.set_threads(0)
        assert tokenizer._threads == 1
    finally:
        tokenizer.set_threads(before)
