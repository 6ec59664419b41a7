"""A prepared German->English corpus plus typed copies of some of its training pairs.

People type otherwise than corpora are written (seq2seq/unseen.py): without final
punctuation, in lower case, with ä, ö, ü, ß spelled out, in capitals. This writes
a copy of a prepared folder whose training text also holds such a copy of a random
share of its pairs, one way of typing each, so a model can learn them. The
tokenizers, dev and test splits are the folder's own. `benchmark.py typed` scores
a model on the dev and test sets typed in the same ways (FORMS).

    python scripts/typed_copies.py data/de-en data/de-en-typed --share 0.2
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
from pathlib import Path

from seq2seq.unseen import SPELLED_OUT as RESPELLED  # what `unseen.fit` undoes

END = re.compile(r"\s*[.!?]+$")
SPELLED_OUT = str.maketrans({letter: spelled for spelled, letter in RESPELLED["de"]})


def first_word_lowered(text: str) -> str:
    """'Wie alt bist du?' -> 'wie alt bist du?'; 'USA ...' stays."""
    return text[:1].lower() + text[1:] if text.split(" ", 1)[0][1:].islower() else text


# a way of typing: (the source as typed, the reference to expect)
FORMS = {
    "without final punctuation": (lambda s: END.sub("", s), lambda r: END.sub("", r)),
    "the first word in lower case": (first_word_lowered, lambda r: r),
    "all in lower case": (str.lower, lambda r: r),
    "with ä, ö, ü, ß spelled out (ae, oe, ue, ss)": (
        lambda s: s.translate(SPELLED_OUT),
        lambda r: r,
    ),
    "in capitals": (str.upper, str.upper),
}
# the ways the copies are typed ("all in lower case" covers the first word)
COPIED = (
    "all in lower case",
    "without final punctuation",
    "with ä, ö, ü, ß spelled out (ae, oe, ue, ss)",
    "in capitals",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a prepared corpus (seq2seq prepare)")
    parser.add_argument("out", type=Path, help="the new folder (must not exist)")
    parser.add_argument("--share", type=float, default=0.2, help="pairs copied (default 0.2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; name a new folder")
    stats = json.loads((args.folder / "stats.json").read_text(encoding="utf-8"))
    src_lang, tgt_lang = stats["src"], stats["tgt"]
    src, tgt = (
        (args.folder / f"train.{lang}").read_text(encoding="utf-8").splitlines()
        for lang in (src_lang, tgt_lang)
    )
    rng = random.Random(args.seed)
    copies = []
    for i in rng.sample(range(len(src)), int(args.share * len(src))):
        typed, expected = FORMS[rng.choice(COPIED)]
        pair = typed(src[i]), expected(tgt[i])
        if all(text.strip() for text in pair):
            copies.append(pair)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=".typed-copies-"))
    try:  # written beside, renamed at the end: a failure leaves no half-written folder
        partial = shutil.copytree(args.folder, scratch / "folder")
        for side, lang in enumerate((src_lang, tgt_lang)):
            with (partial / f"train.{lang}").open("a", encoding="utf-8") as f:
                f.writelines(pair[side] + "\n" for pair in copies)
        stats["typed_copies"] = {"of": str(args.folder), "pairs": len(copies), "seed": args.seed}
        (partial / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        partial.rename(args.out)
    finally:
        shutil.rmtree(scratch)
    print(f"{args.out}: {len(src):,} pairs and {len(copies):,} typed copies")


if __name__ == "__main__":
    main()
