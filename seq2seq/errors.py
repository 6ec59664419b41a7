"""The base of every error a command answers with one line and exit status 1."""

from __future__ import annotations


class Seq2SeqError(ValueError):
    """Bad input, a bad setting or an unusable file; the message says which and why."""


class MissingDependencyError(Seq2SeqError):
    """An optional extra (e.g. matplotlib for plots) is not installed."""
