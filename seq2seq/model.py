"""`Seq2Seq`: embeddings + encoder + decoder + output layer, and `build_model`.

The model never sees strings: ids in, logits or log-probabilities out.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic

from seq2seq.config import ModelConfig
from seq2seq.data import Batch
from seq2seq.decoders import (
    AttentionDecoder,
    ContextDecoder,
    DecoderState,
    full_precision,
    linear_rows,
    wide_dtype,
)
from seq2seq.dropout import Dropout
from seq2seq.encoders import EncoderOutput, GRConvEncoder, RNNEncoder
from seq2seq.loss import output_loss
from seq2seq.onednn import PackedLinear
from seq2seq.tokenizer import BOS_ID, PAD_ID


@dataclass
class StepTables:
    """A search's C words (a shortlist's columns), prepared once per search.

    output: the output layer over the C columns only.
    word_inputs: [C + 1, 3H + 2L] the decoder's projections of each column's
        word (row C: BOS), looked up by a step instead of projecting its words
        (two of a step's matrix products: beam 5 12-15 % faster, measured).
    """

    output: Callable[[Tensor], Tensor]
    word_inputs: Tensor


class Seq2Seq(nn.Module):
    """An encoder-decoder translation model."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        tgt_embedding: nn.Embedding,
        maxout_size: int,
        tie_embeddings: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tgt_embedding = tgt_embedding
        self.embedding_dropout = Dropout(dropout)
        self.output = nn.Linear(maxout_size, tgt_embedding.num_embeddings)
        if tie_embeddings:
            self.output.weight = tgt_embedding.weight

    def encode(self, src_ids: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """src_ids [B, S] (EOS-terminated, PAD after), src_lengths [B]."""
        return self.encoder(src_ids, src_lengths)

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """The decoder state before the first target word."""
        return self.decoder.init_state(encoded)

    def step_tables(self, columns: Tensor) -> StepTables:
        """What a search restricted to the target ids `columns` (a shortlist) needs
        at every step, prepared once per search."""
        words = torch.cat([columns, columns.new_tensor([BOS_ID])])
        embedded = self.tgt_embedding(words)
        return StepTables(self._output_layer(columns), self.decoder.word_inputs(embedded))

    def _output_layer(self, columns: Tensor) -> Callable[[Tensor], Tensor]:
        """The output layer over the target ids `columns` only."""
        layer = self.output
        if isinstance(layer, PackedLinear):  # bf16 on a CPU: the rows packed once per search
            return PackedLinear(layer.weight[columns], layer.bias[columns])
        if isinstance(layer, nn.Linear):
            return functools.partial(
                F.linear, weight=layer.weight[columns], bias=layer.bias[columns]
            )
        # a dynamic int8 Linear (`export --int8`): the same kind of layer over the rows
        with warnings.catch_warnings():  # torch.ao's notice that quantized tensors are deprecated
            warnings.simplefilter("ignore")
            restricted = quantized_dynamic.Linear(layer.in_features, len(columns))
        restricted.set_weight_bias(layer.weight().index_select(0, columns), layer.bias()[columns])
        return restricted

    def decode_step(
        self, prev: Tensor, state: DecoderState, tables: StepTables | None = None
    ) -> tuple[Tensor, DecoderState]:
        """The log-probabilities of the next word and the new state.

        Without `tables`: prev [B] target ids -> log-probabilities [B, V].
        With `tables = step_tables(columns)`: prev [B] column numbers (C for
        BOS) -> log-probabilities [B, C] over those C columns, normalised among them.
        """
        if tables is None:
            embedded = self.embedding_dropout(self.tgt_embedding(prev))
            word_inputs, output = self.decoder.word_inputs(embedded), self.output
        else:
            word_inputs, output = tables.word_inputs.index_select(0, prev), tables.output
        features, state = self.decoder.step(word_inputs, state)
        logits = output(features)
        # 16-bit logits convert to float32 inside the kernel: one pass over [B, V]
        return torch.log_softmax(logits, dim=-1, dtype=wide_dtype(logits.dtype)), state

    def forward(self, batch: Batch, label_smoothing: float | None = None) -> Tensor:
        """Teacher forcing: logits [B, T, V] for `batch.tgt_out`; given `label_smoothing`,
        the training loss instead, summed over real tokens (loss.output_loss: the output
        layer and the loss fused, no logits kept)."""
        encoded = self.encode(batch.src_ids, batch.src_lengths)
        embedded = self.embedding_dropout(self.tgt_embedding(batch.tgt_in))  # [B, T, E]
        features = self.decoder(embedded, self.init_state(encoded))  # [B, T, L]
        if label_smoothing is None:
            return linear_rows(self.output, features)
        weight, bias = self.output.weight, self.output.bias
        return output_loss(features, weight, bias, batch.tgt_out, label_smoothing)

    def score(self, src_ids: Tensor, src_lengths: Tensor, tgt_out: Tensor) -> tuple[Tensor, Tensor]:
        """Forced decoding: log p(tgt | src).

        Args:
            src_ids: [B, S] EOS-terminated source ids.
            src_lengths: [B].
            tgt_out: [B, T] target ids followed by EOS, PAD after.

        Returns:
            The sum over tokens [B] and the per-token log-probs [B, T] (0 at PAD).
        """
        tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], BOS_ID), tgt_out[:, :-1]], dim=1)
        logits = full_precision(self.forward(Batch(src_ids, src_lengths, tgt_in, tgt_out)))
        # log p(y) = logit(y) - logsumexp(logits): no [B, T, V] log_softmax tensor
        token = logits.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)
        token = token - torch.logsumexp(logits, dim=-1)
        token = token.masked_fill(tgt_out == PAD_ID, 0.0)
        return token.sum(dim=1), token


@dataclass
class EnsembleState:
    """The decoder states of an ensemble's models, reordered together."""

    states: list[DecoderState]
    attention: Tensor | None = None  # an ensemble draws no attention

    def reorder(self, rows: Tensor) -> EnsembleState:
        return EnsembleState([state.reorder(rows) for state in self.states])

    def keep(self, sentences: Tensor, beams: int) -> EnsembleState:
        return EnsembleState([state.keep(sentences, beams) for state in self.states])


class Ensemble(nn.Module):
    """Several models searched as one: the mean of their next-word log-probabilities.

    It has the interface search and scoring use (`encode`, `init_state`,
    `step_tables`, `decode_step`, `score`), so `search.py` needs no change.
    """

    def __init__(self, models: list[Seq2Seq]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def encode(self, src_ids: Tensor, src_lengths: Tensor) -> list[EncoderOutput]:
        return [model.encode(src_ids, src_lengths) for model in self.models]

    def init_state(self, encoded: list[EncoderOutput]) -> EnsembleState:
        return EnsembleState([m.init_state(e) for m, e in zip(self.models, encoded)])

    def step_tables(self, columns: Tensor) -> list[StepTables]:
        return [model.step_tables(columns) for model in self.models]

    def decode_step(
        self, prev: Tensor, state: EnsembleState, tables: list[StepTables] | None = None
    ) -> tuple[Tensor, EnsembleState]:
        tables = tables or [None] * len(self.models)
        steps = [m.decode_step(prev, s, t) for m, s, t in zip(self.models, state.states, tables)]
        log_probs = torch.stack([log_probs for log_probs, _ in steps]).mean(0)
        return log_probs, EnsembleState([new for _, new in steps])

    def score(self, src_ids: Tensor, src_lengths: Tensor, tgt_out: Tensor) -> tuple[Tensor, Tensor]:
        """Forced decoding with the mean of the models' per-token log-probs."""
        per_token = torch.stack([m.score(src_ids, src_lengths, tgt_out)[1] for m in self.models])
        per_token = per_token.mean(0)
        return per_token.sum(dim=1), per_token


def build_model(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The single bridge from a `ModelConfig` to modules."""
    src_embedding = nn.Embedding(src_vocab_size, config.emb_size, padding_idx=PAD_ID)
    tgt_embedding = nn.Embedding(tgt_vocab_size, config.emb_size, padding_idx=PAD_ID)
    for embedding in (src_embedding, tgt_embedding):
        # N(0, 1/E) rather than torch's N(0, 1): the tied output matrix would
        # otherwise start with logits of standard deviation sqrt(E)
        nn.init.normal_(embedding.weight, std=config.emb_size**-0.5)
        nn.init.zeros_(embedding.weight[PAD_ID])
    if config.encoder == "rnn":
        encoder = RNNEncoder(
            src_embedding,
            config.cell,
            config.hidden_size,
            config.layers,
            config.bidirectional,
            config.dropout,
        )
    else:
        encoder = GRConvEncoder(src_embedding, config.hidden_size, config.dropout)
    if config.decoder == "context":
        decoder = ContextDecoder(
            config.emb_size,
            encoder.summary_size,
            config.hidden_size,
            config.maxout_size,
            config.dropout,
        )
    else:
        decoder = AttentionDecoder(
            config.emb_size,
            encoder.state_size,
            encoder.summary_size,
            config.hidden_size,
            config.attention_size,
            config.maxout_size,
            config.dropout,
        )
    return Seq2Seq(
        encoder,
        decoder,
        tgt_embedding,
        config.maxout_size,
        config.tie_embeddings,
        config.dropout,
    )
