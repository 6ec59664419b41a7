"""scripts/typed_copies.py: a prepared folder plus typed copies of some training pairs."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "typed_copies.py"
sys.path.insert(0, str(SCRIPT.parent))

from typed_copies import FORMS  # noqa: E402


def test_the_ways_of_typing():
    text, reference = "Wie alt ist die Straße?", "How old is the street?"
    typed = {name: (form[0](text), form[1](reference)) for name, form in FORMS.items()}
    assert typed == {
        "without final punctuation": ("Wie alt ist die Straße", "How old is the street"),
        "the first word in lower case": ("wie alt ist die Straße?", reference),
        "all in lower case": ("wie alt ist die straße?", reference),
        "with ä, ö, ü, ß spelled out (ae, oe, ue, ss)": ("Wie alt ist die Strasse?", reference),
        "in capitals": ("WIE ALT IST DIE STRASSE?", "HOW OLD IS THE STREET?"),
    }
    assert FORMS["the first word in lower case"][0]("USA ist groß.") == "USA ist groß."


def test_copies_are_added_to_the_training_text_only(tiny_prepared, tmp_path):
    out = tmp_path / "typed"
    run = [sys.executable, str(SCRIPT), str(tiny_prepared), str(out), "--share", "0.5"]
    assert subprocess.run(run, capture_output=True).returncode == 0
    for lang in ("de", "en"):
        original = (tiny_prepared / f"train.{lang}").read_text().splitlines()
        lines = (out / f"train.{lang}").read_text().splitlines()
        assert lines[: len(original)] == original and len(lines) == len(original) + 150
        assert (out / f"val.{lang}").read_bytes() == (tiny_prepared / f"val.{lang}").read_bytes()
    assert json.loads((out / "stats.json").read_text())["typed_copies"]["pairs"] == 150
    again = subprocess.run(run, capture_output=True, text=True)  # the folder is not replaced
    assert again.returncode == 2 and "exists" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typed"]
