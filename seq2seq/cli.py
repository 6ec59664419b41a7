"""The `seq2seq` command: argument parsing only; each subcommand calls the library.

Results go to stdout, logs and progress to stderr. Expected failures (bad
input, bad config, bad model file) print one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import sys
from pathlib import Path

from seq2seq import __version__
from seq2seq.config import ConfigError, check_device, preset_names
from seq2seq.data import DataError
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_path

log = logging.getLogger("seq2seq")

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "de-en.pt"


def cmd_prepare(args: argparse.Namespace) -> int:
    from seq2seq.prepare import prepare_corpus

    stats = prepare_corpus(
        args.corpus[0] if len(args.corpus) == 1 else args.corpus,
        args.src,
        args.tgt,
        args.out,
        vocab_size=args.vocab_size,
        joint=args.joint,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        max_words=args.max_words,
        max_ratio=args.max_ratio,
        valid_percent=args.valid_percent,
        fmt=args.format,
    )
    print(json.dumps(stats["splits"], indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from seq2seq.config import load_config
    from seq2seq.train import Trainer

    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    overrides = args.set + ([f"train.threads={args.threads}"] if args.threads else [])
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise DataError(f"{run_dir}: not a training run folder (no config.yaml)")
        config = load_config(run_dir / "config.yaml", overrides)
    else:
        if not args.config:
            raise ConfigError("train needs a config: a YAML file or a preset name")
        config = load_config(args.config, overrides)
    model_path = Trainer.build(config, run_dir, resume=bool(args.resume)).run()
    print(model_path)
    return 0


def _input_lines(args: argparse.Namespace, stack: contextlib.ExitStack):
    from seq2seq.data import open_text, raw_lines

    if args.text:
        return iter(args.text)
    if not args.input:
        return _decode_lines(raw_lines(sys.stdin.buffer, "stdin"), "stdin")
    stream = stack.enter_context(open_text(args.input))  # plain or gzip
    return _decode_lines(raw_lines(stream, args.input), args.input)


def _decode_lines(stream, name: str):
    for number, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("%s:%d: invalid UTF-8 replaced", name, number)
            line = raw.decode("utf-8", errors="replace")
        yield "".join(c if c.isprintable() or c == "\t" else " " for c in line.rstrip("\r\n"))


def cmd_translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from seq2seq.translate import CHUNK_LINES, Translator

    if args.plot_attention and not args.text:
        raise ConfigError("--plot-attention needs the sentence as an argument")
    _check_output(args.output, "--output", args.force, {"--input": args.input})
    _check_picture(args.plot_attention, "--plot-attention", args.force, {})
    if args.plot_attention and len(args.model or []) > 1:
        raise ConfigError("--plot-attention draws one model's attention; give one -m")
    translator = Translator.from_files(args.model or [DEFAULT_MODEL], args.device, args.dtype)
    if args.no_shortlist:
        translator.shortlist = None
    beam = args.beam or translator.config.search.beam
    nbest = args.nbest or translator.config.search.nbest
    if nbest > beam:
        raise ConfigError(f"an n-best of {nbest} needs --beam >= {nbest} (the beam is {beam})")
    if args.plot_attention:
        from seq2seq.plots import plot_attention

        print(plot_attention(translator, " ".join(args.text), args.plot_attention, beam))
        log.info("attention weights drawn to %s", args.plot_attention)
        return 0
    with contextlib.ExitStack() as stack:
        lines = _input_lines(args, stack)
        out = sys.stdout
        if args.output:  # written under a temporary name: a killed run leaves no partial file
            tmp = stack.enter_context(atomic_path(args.output))
            out = stack.enter_context(tmp.open("w", encoding="utf-8"))
        # a person at a terminal, or a program waiting for each line: a line at a time
        one_by_one = args.line_buffered or (not args.text and not args.input and sys.stdin.isatty())
        results = translator.translate_stream(
            lines,
            beam,
            nbest,
            args.batch_tokens,
            not args.no_split,
            1 if one_by_one else CHUNK_LINES,
        )
        bar = stack.enter_context(tqdm(unit=" lines", disable=None if args.output else True))
        for index, result in enumerate(results):
            if nbest > 1 and args.nbest_format == "moses":  # id ||| text ||| features ||| total
                for text, score in zip(result.texts, result.scores):
                    out.write(f"{index} ||| {text} ||| Seq2Seq0= {score:.6g} ||| {score:.6g}\n")
            elif nbest > 1:
                for text, score in zip(result.texts, result.scores):
                    out.write(f"{index} ||| {text} ||| {score:.4f}\n")
            else:
                out.write(result.texts[0] + "\n")
            if one_by_one:
                out.flush()
            bar.update(1)
    return 0


def _check_output(
    target: str | None, flag: str, force: bool, inputs: dict[str, str | None]
) -> None:
    """Refuse an output file that is one of the inputs ({their flags: paths}), a folder,
    or, without --force, a file that exists: no command replaces a file it was not told to."""
    if not target:
        return
    path = Path(target)
    for source_flag, source in inputs.items():
        if source and Path(source).resolve() == path.resolve():
            raise ConfigError(f"{flag} {target} is the {source_flag} file; name another file")
    if path.is_dir():
        raise ConfigError(f"{flag} {target} is a folder; name a file")
    if path.exists() and not force:
        raise ConfigError(f"{flag} {target} exists; --force replaces it")


def _check_picture(target: str | None, flag: str, force: bool, inputs: dict[str, str | None]):
    """_check_output, and a name whose suffix is a picture format matplotlib writes."""
    _check_output(target, flag, force, inputs)
    if target:
        from seq2seq.plots import check_picture_path

        check_picture_path(target)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seq2seq.data import read_lines

    _check_picture(args.plot, "--plot", args.force, {"--hyp": args.hyp, "--ref": args.ref})
    if args.hyp:
        if not args.ref or (args.by_length and not args.src):
            raise ConfigError("--hyp needs --ref (and --src for --by-length)")
        systems = {Path(args.hyp).name: list(read_lines(args.hyp))}
        sources = list(read_lines(args.src)) if args.by_length else []
        return _report(args, systems, sources, args.ref)
    if bool(args.src) != bool(args.ref):
        raise ConfigError("give --src and --ref, or neither (the model's test splits)")
    for test_set, systems, sources, ref in _translate_for_evaluation(args):
        _report(args, systems, sources, ref, test_set)
    return 0


def _report(
    args: argparse.Namespace,
    systems: dict[str, list[str]],
    sources: list[str],
    ref: str,
    test_set: str | None = None,
) -> int:
    """Print the scores of `systems` ({name: hypotheses}) against `ref`; `test_set`: the
    name of one of a model's several test splits, printed with them."""
    from seq2seq.data import read_lines
    from seq2seq.evaluate import score_by_length, score_corpus

    if test_set and not args.json:
        print(f"== {test_set}")
    refs = list(read_lines(ref))
    if not refs:
        raise DataError(f"{ref}: no lines to score")
    if args.by_length:
        table = {
            name: score_by_length(sources, hyps, refs, args.by_length)
            for name, hyps in systems.items()
        }
        if args.json:
            print(json.dumps({"test_set": test_set, **table} if test_set else table))
        else:
            print(_length_table(table))
        if args.plot:
            from seq2seq.plots import plot_by_length

            log.info("drawn to %s", plot_by_length(table, args.plot))
        return 0
    result = score_corpus(next(iter(systems.values())), refs)
    if args.json:
        print(json.dumps({"test_set": test_set, **result} if test_set else result))
    else:
        print(f"BLEU {result['bleu']:.2f}  {result['bleu_signature']}")
        print(f"chrF {result['chrf']:.2f}  {result['chrf_signature']}")
    return 0


def _translate_for_evaluation(args: argparse.Namespace):
    """For --src/--ref, or else each of the first model's test splits: (its name or None,
    {system name: hypotheses}, the source lines, ref). A system is the model (or
    ensemble), or each model with --by-length."""
    from seq2seq.data import read_lines
    from seq2seq.translate import Translator

    models = args.model or [str(DEFAULT_MODEL)]
    groups = [[m] for m in models] if args.by_length else [models]
    translators = {}
    for group in groups:
        name = "+".join(_model_name(m) for m in group)
        while name in translators:  # the same model twice gets two columns
            name += "'"
        translators[name] = Translator.from_files(group, args.device, args.dtype)
        if args.no_shortlist:
            translators[name].shortlist = None
    if args.src:
        test_sets = [(None, args.src, args.ref)]
    else:
        test_sets = _test_splits(next(iter(translators.values())).config.data)
        for _, src, ref in test_sets:
            log.info("the model's test split: %s and %s", src, ref)
        if len(test_sets) > 1 and args.plot:
            raise ConfigError("--plot draws one test set: the model has several; give --src, --ref")
        if len(test_sets) == 1:  # named only where there are several
            test_sets = [(None, *test_sets[0][1:])]
    for test_set, src, ref in test_sets:
        sources = list(read_lines(src))  # read once: it may be a pipe
        # test sets hold a sentence a line: no splitting
        systems = {
            name: [
                t.texts[0]
                for t in translator.translate_stream(iter(sources), args.beam, split=False)
            ]
            for name, translator in translators.items()
        }
        yield test_set, systems, sources, ref


def _test_splits(data) -> list[tuple[str, str, str]]:
    """(name, src, ref) of a model's test split, or of each test.NAME where its folder was
    prepared from several corpora (each corpus's test split kept apart)."""
    folder = Path(data.dir)
    if not folder.is_dir():
        raise DataError(f"the model's data folder {folder} is not here: give --src and --ref")
    names = [data.test]
    if not (folder / f"{data.test}.{data.src}").exists():
        found = folder.glob(f"{data.test}.*.{data.src}")
        names = sorted(p.name[: -len(data.src) - 1] for p in found) or names
    splits = [(n, f"{folder}/{n}.{data.src}", f"{folder}/{n}.{data.tgt}") for n in names]
    for _, src, ref in splits:
        if not (Path(src).is_file() and Path(ref).is_file()):
            raise DataError(
                f"the model's data folder {folder} has no test split ({src}, {ref}; a corpus "
                "without one, such as a TSV file, gives none): give --src and --ref"
            )
    return splits


def _model_name(path: str) -> str:
    """A model's label: its file name, or the run folder's name for a run's model.pt."""
    path = Path(path)
    if path.is_dir() or path.name == "model.pt":
        return (path if path.is_dir() else path.parent).name
    return path.stem


def _length_table(table: dict[str, list[dict]]) -> str:
    """A markdown table: a row per bucket, BLEU and chrF per system."""
    names = list(table)
    head = (
        "| source words | sentences | " + " | ".join(f"{n} BLEU | {n} chrF" for n in names) + " |"
    )
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for index, row in enumerate(table[names[0]]):
        cells = [row["bucket"], str(row["sentences"])]
        for name in names:
            other = table[name][index]
            cells += [_number_or_dash(other["bleu"]), _number_or_dash(other["chrf"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cmd_plot(args: argparse.Namespace) -> int:
    from seq2seq.plots import plot_run, plot_runs

    _check_picture(args.output, "-o/--output", args.force, {})  # RUN_DIR/curves.png: the run's own
    if len(args.run_dir) == 1:
        print(plot_run(args.run_dir[0], args.output))
    elif not args.output:
        raise ConfigError("several runs need -o/--output (the figure of all of them)")
    else:
        print(plot_runs([Path(run) for run in args.run_dir], args.output))
    return 0


def cmd_score_phrases(args: argparse.Namespace) -> int:
    from seq2seq.phrases import ScoreOptions, score_table, update_moses_ini
    from seq2seq.translate import Translator

    _check_output(args.output, "--output", args.force, {"table": args.table})
    ini = None
    if args.moses_ini:  # every input is checked before anything is written
        ini_in, ini_out = args.moses_ini
        if not args.output:
            raise ConfigError(
                "--moses-ini needs -o/--output (the path the new moses.ini points to)"
            )
        if args.log:
            raise ConfigError(
                "--log with --moses-ini: Moses takes the log of every table score; drop --log"
            )
        inputs = {"--moses-ini IN": ini_in, "table": args.table, "--output": args.output}
        _check_output(ini_out, "--moses-ini OUT", args.force, inputs)
        try:
            text = Path(ini_in).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{ini_in}: not valid UTF-8") from None
        added = 2 if args.reverse_model else 1
        ini = update_moses_ini(text, str(Path(args.output).resolve()), added, args.weight)
    translator = Translator.from_file(args.model or DEFAULT_MODEL, args.device, args.dtype)
    reverse = (
        Translator.from_file(args.reverse_model, args.device, args.dtype)
        if args.reverse_model
        else None
    )
    options = ScoreOptions(
        as_log=args.log,
        per_token=args.per_token,
        pmi=args.pmi,
        skip_bad=args.skip_bad,
        scores=ini.scores if ini else None,
    )
    counts = score_table(args.table, args.output, translator, reverse, options)
    log.info("scored %d lines (%d skipped)", counts["lines"], counts["skipped"])
    if ini:
        with atomic_path(ini_out) as tmp:
            tmp.write_text(ini.text, encoding="utf-8")
        if ini.binarized_path:
            log.info(
                "%s names the compact table %s; build it: processPhraseTableMin -in %s -out %s "
                "-nscores %d -threads 1",
                ini_out,
                ini.binarized_path,
                Path(args.output).resolve(),
                ini.binarized_path.removesuffix(".minphr"),
                ini.scores + added,
            )
        log.info(
            "tune the new weight(s): mert-moses.pl DEV.SRC DEV.REF MOSES_BIN %s "
            "--activate-features=%s",
            ini_out,
            ini.feature,
        )
    return 0


def cmd_phrase_space(args: argparse.Namespace) -> int:
    from seq2seq.phrases import phrase_space, read_phrases
    from seq2seq.plots import plot_phrase_space
    from seq2seq.translate import Translator

    _check_picture(args.output, "-o/--output", args.force, {"phrases": args.phrases})
    translator = Translator.from_file(args.model or DEFAULT_MODEL, args.device, args.dtype)
    phrases = read_phrases(args.phrases)
    if len(phrases) < 3:
        raise DataError(f"{args.phrases}: need at least 3 phrases for a 2-D projection")
    print(plot_phrase_space(phrases, phrase_space(translator, phrases), args.output))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from seq2seq.serve import ServeOptions, check_address, serve
    from seq2seq.translate import Translator

    check_address(args.host, args.port)  # before the model's seconds of loading
    model = Path(args.model or DEFAULT_MODEL)
    translator = Translator.from_file(model, args.device, args.dtype)
    if args.no_shortlist:
        translator.shortlist = None
    options = ServeOptions(
        beam=args.beam,
        char_limit=args.char_limit,
        batch_limit=args.batch_limit,
        max_queue=args.max_queue,
        batch_wait=args.batch_wait_ms / 1000,
        batching=not args.no_batching,
    )
    log.info("http://%s:%d/ (the page), /docs (the API)", args.host, args.port)
    serve(translator, model.stem if model.suffix else model.name, args.host, args.port, options)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from seq2seq.checkpoint import average_models, save_file

    paths = [Path(p) for p in args.models]
    if len(paths) == 1 and paths[0].is_dir():  # a run folder: its last checkpoints
        found = sorted((paths[0] / "checkpoints").glob("step*.pt"))
        if len(found) < args.last:
            raise DataError(
                f"{paths[0]}: {len(found)} checkpoints, --last {args.last} asked "
                "(train.keep_checkpoints keeps more)"
            )
        paths = found[-args.last :]
    inputs = {f"model {path}": str(path) for path in paths}
    _check_output(args.output, "-o/--output", args.force, inputs)
    save_file(average_models(paths), args.output)
    log.info("averaged %s", ", ".join(p.name for p in paths))
    print(args.output)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from seq2seq.data import open_text, read_lines, read_parallel, read_tsv
    from seq2seq.nbest import ScoreSettings, rescore_nbest, score_pair_stream
    from seq2seq.translate import Translator

    settings = ScoreSettings(per_token=args.per_token, skip_bad=args.skip_bad, feature=args.feature)
    if args.nbest and not args.src:
        raise ConfigError("--nbest needs --src, the source sentences (line i for id i)")
    if args.feature is not None and not re.fullmatch(r"[^\s=|]+", args.feature):
        raise ConfigError(f"--feature {args.feature!r}: a name without spaces, '=' or '|'")
    if not args.nbest and not args.tsv and not (args.src and args.tgt):
        raise ConfigError("score needs --src and --tgt, --tsv, or --nbest with --src")
    inputs = {"--src": args.src, "--tgt": args.tgt, "--tsv": args.tsv, "--nbest": args.nbest}
    _check_output(args.output, "-o/--output", args.force, inputs)
    translator = Translator.from_file(args.model or DEFAULT_MODEL, args.device, args.dtype)
    with contextlib.ExitStack() as stack:
        sink = sys.stdout.buffer
        if args.output:
            sink = stack.enter_context(stack.enter_context(atomic_path(args.output)).open("wb"))
        if args.nbest:
            nbest = stack.enter_context(open_text(args.nbest))
            sources = read_lines(args.src)
            counts = rescore_nbest(translator, nbest, args.nbest, sources, sink, settings)
            added = f": feature {counts['feature']}=" if counts["feature"] else ""
            log.info("rescored %d lines (%d skipped)%s", counts["lines"], counts["skipped"], added)
        else:
            pairs = read_tsv(Path(args.tsv)) if args.tsv else read_parallel(args.src, args.tgt)
            for score in score_pair_stream(translator, pairs, settings):
                sink.write(f"{score:.6g}\n".encode())
        sink.flush()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seq2seq.checkpoint import export_model

    try:
        metrics = json.loads(args.metrics) if args.metrics else {}
    except json.JSONDecodeError as error:
        raise ConfigError(f"--metrics: not valid JSON ({error})") from None
    if not isinstance(metrics, dict):
        raise ConfigError("--metrics: expected a JSON object, e.g. '{\"test_bleu\": 40.1}'")
    if args.half and args.int8:
        raise ConfigError("--half or --int8, not both")
    _check_output(args.output, "output", args.force, {"model": args.model})
    shortlist_text = tuple(Path(f) for f in args.shortlist) if args.shortlist else None
    export_model(args.model, args.output, args.half, metrics, args.int8, shortlist_text)
    print(args.output)
    return 0


class Parser(argparse.ArgumentParser):
    """A usage error is one line and exit status 1, like every other refused input."""

    def error(self, message: str):
        self.exit(1, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _number(kind: type, low: float, above: bool = False, high: float | None = None):
    """An argparse type: a finite `kind` >= low (> low with `above`), <= high."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if above else '>='} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, 1)
finite_float = _number(float, -math.inf)


def _edges(text: str) -> list[int]:
    """Increasing positive bucket edges, e.g. '10,20,30'."""
    try:
        edges = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 10,20,30") from None
    if not edges or edges[0] < 1 or edges != sorted(set(edges)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected increasing numbers >= 1")
    return edges


def device_type(text: str) -> str:
    try:
        return check_device(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = Parser(
        prog="seq2seq",
        description="GRU encoder-decoder translation (Cho et al. 2014).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"seq2seq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = Parser(add_help=False)
    common.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads for torch and SentencePiece (default: torch's choice; "
        "train: train.threads)",
    )

    def command(name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, parents=[common], formatter_class=HelpFormatter, **kwargs
        )

    def device(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", type=device_type, default="cpu", help="cpu, cuda, cuda:N, mps")
        p.add_argument(
            "--dtype",
            choices=("fp32", "bf16"),
            default="fp32",
            help="bf16: search under bf16 autocast (fast where the CPU has avx512_bf16/AMX)",
        )

    def force(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--force", action="store_true", help="replace output files that exist already"
        )

    def shortlist(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-shortlist",
            action="store_true",
            help="search over the whole vocabulary even if the model file has a shortlist",
        )

    p = command("prepare", "clean a corpus and train SentencePiece")
    p.add_argument(
        "corpus",
        nargs="+",
        help="local folder of {split}.{lang}[.gz], TSV (src<TAB>tgt or Tatoeba's "
        "id<TAB>src<TAB>id<TAB>tgt), Moses table, "
        "or datasets hub name (e.g. bentrevett/multi30k, wmt14:fr-en); several corpora "
        "train together and keep their dev sets apart (val.NAME)",
    )
    p.add_argument("--src", required=True, help="source language code")
    p.add_argument("--tgt", required=True, help="target language code")
    p.add_argument(
        "--out",
        required=True,
        help="output folder, e.g. data/multi30k-de-en: a new folder, or one an earlier "
        "prepare wrote (it is replaced)",
    )
    p.add_argument("--vocab-size", type=_number(int, 16), default=8000, help="pieces per model")
    p.add_argument("--joint", action="store_true", help="one model for both languages")
    p.add_argument(
        "--model-type", choices=("bpe", "unigram"), default="bpe", help="SentencePiece model"
    )
    p.add_argument(
        "--character-coverage",
        type=_number(float, 0, above=True, high=1),
        default=1.0,
        help="share of characters SentencePiece covers with pieces of their own",
    )
    p.add_argument("--max-words", type=positive_int, default=100, help="drop longer pairs")
    p.add_argument(
        "--max-ratio",
        type=_number(float, 1),
        default=9.0,
        help="drop pairs with a larger word-count ratio",
    )
    p.add_argument(
        "--valid-percent",
        type=_number(float, 0, above=True, high=50),
        default=1.0,
        help="held-out share of a single-file corpus (TSV, Moses)",
    )
    p.add_argument(
        "--format",
        choices=("folder", "tsv", "moses", "hub"),
        help="corpus format (guessed by default)",
    )
    p.set_defaults(func=cmd_prepare)

    p = command(
        "train", "train a model from a config", description=f"Presets: {', '.join(preset_names())}"
    )
    p.add_argument("config", nargs="?", default="", help="YAML file or preset name")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument("--run-dir", help="output folder (default runs/CONFIG_NAME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.set_defaults(func=cmd_train)

    p = command("translate", "translate text with a model file")
    p.add_argument("text", nargs="*", help="sentences (default: stdin or --input)")
    p.add_argument(
        "-m",
        "--model",
        action="append",
        help=f"model file or run folder (default models/{DEFAULT_MODEL.name}); "
        "repeat for an ensemble",
    )
    p.add_argument("--input", help="input file, one sentence a line (plain or gzip)")
    p.add_argument("--output", help="output file (default stdout)")
    p.add_argument(
        "--line-buffered",
        action="store_true",
        help="translate and write each line as soon as it is read (for a program that writes "
        "a line and waits for its translation; a terminal's input is read so anyway), "
        "not 2,000 lines at a time",
    )
    p.add_argument(
        "--beam", type=positive_int, help="beam size (1 = greedy; default from the model)"
    )
    p.add_argument(
        "--nbest",
        type=positive_int,
        help="write K best as 'i ||| text ||| score' (default: search.nbest of the model)",
    )
    p.add_argument(
        "--batch-tokens",
        type=positive_int,
        help="source tokens x beam per batch (default from the model)",
    )
    p.add_argument(
        "--nbest-format",
        choices=("plain", "moses"),
        default="plain",
        help="plain: 'i ||| text ||| score'; moses: 'i ||| text ||| Seq2Seq0= score ||| score'",
    )
    p.add_argument(
        "--no-split",
        action="store_true",
        help="translate each line as one sentence (by default a line is split into sentences)",
    )
    device(p)
    shortlist(p)
    p.add_argument(
        "--plot-attention", metavar="PNG", help="draw the attention weights of one sentence"
    )
    force(p)
    p.set_defaults(func=cmd_translate)

    p = command(
        "evaluate",
        "BLEU and chrF with sacreBLEU signatures",
        description="Translate a test set as `translate` does (one sentence a line; typed text "
        "made like the training text, seq2seq/unseen.py) and score it with sacreBLEU.",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        help="model file or run folder (default: the shipped model); repeat for an ensemble",
    )
    p.add_argument(
        "--src",
        help="source file to translate (default: the model's data.dir/data.test split, or "
        "each test.NAME split of a folder prepared from several corpora)",
    )
    p.add_argument("--hyp", help="existing system output instead of -m/--src")
    p.add_argument("--ref", help="reference file (default: see --src)")
    p.add_argument("--beam", type=positive_int, help="beam size (default from the model)")
    device(p)
    shortlist(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--by-length",
        nargs="?",
        const=[10, 20, 30],
        type=_edges,
        metavar="EDGES",
        help="BLEU and chrF per source-length bucket, e.g. 10,20,30 (the default) for "
        "1-10, 11-20, 21-30, 31+ words; each -m is then scored on its own",
    )
    p.add_argument("--plot", metavar="PNG", help="with --by-length: draw BLEU per bucket")
    force(p)
    p.set_defaults(func=cmd_evaluate)

    p = command(
        "score-phrases",
        "append model scores to a Moses phrase table",
        description="Appends p(target | source) (Cho et al. 2014a) to the scores "
        "field of every line; all other bytes are kept.",
    )
    p.add_argument("table", help="phrase table (plain or gzip), - for stdin")
    p.add_argument("-m", "--model", help="source->target model file")
    p.add_argument("-o", "--output", help="output table (.gz to compress; default stdout)")
    p.add_argument("--log", action="store_true", help="write the natural log, not a probability")
    p.add_argument("--per-token", action="store_true", help="length-normalised score")
    p.add_argument(
        "--pmi",
        action="store_true",
        help="divide by the target's prior p(e | empty source): how much the source raises it",
    )
    p.add_argument("--reverse-model", metavar="M2", help="also append p(source | target)")
    p.add_argument("--skip-bad", action="store_true", help="drop bad lines instead of stopping")
    p.add_argument(
        "--moses-ini",
        nargs=2,
        metavar=("IN", "OUT"),
        help="write a moses.ini using the new table and feature(s)",
    )
    p.add_argument(
        "--weight", type=finite_float, default=0.2, help="initial weight of new features"
    )
    device(p)
    force(p)
    p.set_defaults(func=cmd_score_phrases)

    p = command("phrase-space", "2-D PCA map of phrase representations c")
    p.add_argument("phrases", help="text file, one source phrase a line")
    p.add_argument("-m", "--model", help="model file")
    p.add_argument("-o", "--output", default="phrase-space.png", help="PNG path")
    device(p)
    force(p)
    p.set_defaults(func=cmd_phrase_space)

    p = command(
        "serve",
        "a translation server: LibreTranslate's API and a web page",
        description="POST /translate, GET /languages, GET /health, GET / (a web page), "
        "GET /docs (OpenAPI). Concurrent requests are merged into one batched search.",
    )
    p.add_argument("-m", "--model", help="model file or run folder (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=_number(int, 1, high=65535), default=5000, help="TCP port")
    p.add_argument("--beam", type=positive_int, help="beam size (default from the model)")
    p.add_argument(
        "--char-limit", type=positive_int, default=5000, help="characters a request may hold"
    )
    p.add_argument("--batch-limit", type=positive_int, default=64, help="texts a request may hold")
    p.add_argument(
        "--max-queue", type=positive_int, default=256, help="requests waiting; more get 503"
    )
    p.add_argument(
        "--batch-wait-ms",
        type=_number(float, 0),
        default=10.0,
        help="how long a batch waits at most for more requests (it starts as soon as as many "
        "requests have come as the last batch had)",
    )
    p.add_argument(
        "--no-batching", action="store_true", help="one request at a time (for comparison)"
    )
    device(p)
    shortlist(p)
    p.set_defaults(func=cmd_serve)

    p = command(
        "score",
        "log p(target | source) of sentence pairs, or a new feature for an n-best list",
        description="Forced decoding: one log p(e|f) per pair (--src/--tgt or --tsv), or "
        "' NAME= log p(e|f)' appended to the features of every line of a Moses or Marian "
        "n-best list (id ||| hypothesis ||| features ||| total), all other bytes kept.",
    )
    p.add_argument("-m", "--model", help="source->target model file (default: the shipped model)")
    p.add_argument("--src", help="source sentences, one a line")
    p.add_argument("--tgt", help="target sentences, one a line (with --src)")
    p.add_argument("--tsv", help="source<TAB>target lines instead of --src/--tgt")
    p.add_argument("--nbest", help="an n-best list to rescore (plain or gzip); needs --src")
    p.add_argument("-o", "--output", help="output file (default stdout)")
    p.add_argument("--per-token", action="store_true", help="divide by the target length")
    p.add_argument(
        "--feature",
        help="the n-best feature's name (default: Seq2Seq0, or the first Seq2SeqN the list "
        "does not name yet)",
    )
    p.add_argument("--skip-bad", action="store_true", help="drop bad n-best lines, counted")
    device(p)
    force(p)
    p.set_defaults(func=cmd_score)

    p = command(
        "average",
        "average the parameters of several checkpoints of one run",
        description="The element-wise mean of the parameters: a run folder's last N "
        "checkpoints, or the files given.",
    )
    p.add_argument("models", nargs="+", help="a run folder, or two or more model files")
    p.add_argument("--last", type=_number(int, 2), default=5, help="checkpoints of a run folder")
    p.add_argument("-o", "--output", required=True, help="the averaged model file")
    force(p)
    p.set_defaults(func=cmd_average)

    p = command("export", "write a compact model file (no training state)")
    p.add_argument("model", help="model file or training checkpoint")
    p.add_argument("output", help="new model file, e.g. models/NAME.pt")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p.add_argument(
        "--int8",
        action="store_true",
        help="store matrices as int8 (a scale per row); Linear layers then run as dynamic int8",
    )
    p.add_argument(
        "--shortlist",
        nargs=2,
        metavar=("SRC", "TGT"),
        help="parallel text (e.g. the prepared train.de train.en) to build a lexical shortlist "
        "from: search then scores only the target pieces likely for the input (faster)",
    )
    p.add_argument("--metrics", help="JSON merged into the metrics, e.g. '{\"test_bleu\": 40.1}'")
    force(p)
    p.set_defaults(func=cmd_export)

    p = command(
        "plot",
        "draw training curves of a run to a PNG",
        description="One run: its loss and dev BLEU. Several: their dev BLEU on one figure, "
        "against training minutes and steps.",
    )
    p.add_argument("run_dir", nargs="+", help="training run folder(s) (holding log.jsonl)")
    p.add_argument("-o", "--output", help="PNG path (default RUN_DIR/curves.png for one run)")
    force(p)
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `seq2seq` command; returns the exit status."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # a bare `seq2seq`: what it can do
        parser.print_help(sys.stderr)
        return 1
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if args.threads and args.command != "train":  # train takes it as train.threads
        import torch

        from seq2seq.tokenizer import set_threads

        torch.set_num_threads(args.threads)
        set_threads(args.threads)
    try:
        return args.func(args)
    except (Seq2SeqError, OSError) as error:
        if isinstance(error, OSError) and error.filename:
            error = f"{error.filename}: {error.strerror}"
        print(f"seq2seq {args.command}: error: {error}", file=sys.stderr)
        return 1
