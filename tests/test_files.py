import pytest

from seq2seq.files import atomic_path, remove_stale_temporaries


def test_the_real_name_appears_only_when_the_write_succeeded(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_folders_made_for_a_failed_write_are_removed(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a" / "b" / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "a" / "b" / "out.txt") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "a" / "b" / "out.txt").read_text() == "whole"


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".step1.pt.tmp123").write_text("half")
    (tmp_path / "step1.pt").write_text("whole")
    (tmp_path / ".hidden").write_text("mine")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".step1.pt.tmp123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "step1.pt"]
