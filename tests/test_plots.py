import sys

import pytest

from seq2seq.errors import MissingDependencyError
from seq2seq.plots import _pyplot, read_log


def test_read_log_skips_broken_records(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"type": "train", "step": 1}\n[1, 2]\n{"ty')
    assert read_log(tmp_path) == [{"type": "train", "step": 1}]


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'seq2seq\[plot\]'"):
        _pyplot()
