"""seq2seq: GRU encoder-decoder translation after Cho et al. 2014a/b.

The Python API::

    from seq2seq import Translator

    translator = Translator.from_file("models/de-en.pt")
    translator.translate(["Ein Hund läuft."])  # one Translation per text
"""

__version__ = "0.1.0"
__all__ = ["Translator"]


def __getattr__(name: str):
    if name == "Translator":  # imported on first use: `import seq2seq` stays light
        from seq2seq.translate import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
