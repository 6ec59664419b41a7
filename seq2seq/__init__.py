"""seq2seq: GRU encoder-decoder translation after Cho et al. 2014a/b."""

__version__ = "0.1.0"
