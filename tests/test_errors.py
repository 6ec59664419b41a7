from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError
from seq2seq.data import DataError
from seq2seq.errors import MissingDependencyError, Seq2SeqError
from seq2seq.runs import RunFolderError
from seq2seq.tokenizer import TokenizerError


def test_every_one_line_error_is_a_seq2seq_error():
    # the command catches Seq2SeqError (and OSError) and prints one line
    for error in (
        CheckpointError,
        ConfigError,
        DataError,
        MissingDependencyError,
        RunFolderError,
        TokenizerError,
    ):
        assert issubclass(error, Seq2SeqError)
