"""Encoders: source ids -> per-position states and a fixed-length summary c.

`RNNEncoder` runs any cell of cells.py; `GRConvEncoder` is the gated
recursive convolutional network of Cho et al. 2014b.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.cells import length_mask, make_recurrent_layer
from seq2seq.dropout import Dropout


@dataclass
class EncoderOutput:
    """What decoders read from an encoder.

    Attributes:
        states: [B, S, D] per-position states (attention memory).
        mask: [B, S] True at real positions.
        summary: [B, D_c] the fixed-length representation c.
    """

    states: Tensor
    mask: Tensor
    summary: Tensor


class RNNEncoder(nn.Module):
    """Embeddings -> recurrent layer; c = tanh(V h_last).

    For a bidirectional encoder h_last is the last forward state and the
    first backward state of the top layer, concatenated.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        cell: str,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = Dropout(dropout)
        self.rnn = make_recurrent_layer(
            cell, embedding.embedding_dim, hidden_size, layers, bidirectional, dropout
        )
        dirs = 2 if bidirectional else 1
        self.state_size = hidden_size * dirs
        self.summarise = nn.Linear(hidden_size * dirs, hidden_size)
        self.summary_size = hidden_size

    def forward(self, src_ids: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """src_ids [B, S], src_lengths [B] -> EncoderOutput."""
        embedded = self.dropout(self.embedding(src_ids))  # [B, S, E]
        states, finals = self.rnn(embedded, src_lengths)  # [B, S, H*dirs], [dirs, B, H]
        last = torch.cat(list(finals), dim=-1)  # [B, H*dirs]
        mask = length_mask(src_lengths, src_ids.size(1))
        return EncoderOutput(states, mask, torch.tanh(self.summarise(last)))


class GRConvEncoder(nn.Module):
    """Gated recursive convolutional encoder (Cho et al. 2014b).

    h_j^(0) = U x_j. At level t, for neighbours h_j (left) and h_{j+1} (right):
        h̃_j = tanh(W_l h_j + W_r h_{j+1} + b)
        [ω_c, ω_l, ω_r] = softmax(G_l h_j + G_r h_{j+1} + g)
        h_j^(t) = ω_c h̃_j + ω_l h_j + ω_r h_{j+1}
    A sentence of length L reaches one node after L - 1 levels; that node is
    c. The nodes of all levels form the attention memory (L(L+1)/2 states).
    Sentences of different lengths share a batch: each stops at its own level.
    """

    def __init__(self, embedding: nn.Embedding, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = Dropout(dropout)
        self.leaf = nn.Linear(embedding.embedding_dim, hidden_size, bias=False)  # U
        self.candidate = nn.Linear(2 * hidden_size, hidden_size)  # [W_l W_r], b
        self.gate = nn.Linear(2 * hidden_size, 3)  # [G_l G_r], g
        self.state_size = self.summary_size = hidden_size

    def forward(self, src_ids: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """src_ids [B, S], src_lengths [B] -> EncoderOutput over all levels."""
        level = self.leaf(self.dropout(self.embedding(src_ids)))  # [B, S, H]
        levels, masks = [level], [length_mask(src_lengths, src_ids.size(1))]
        summary = level[:, 0]
        for depth in range(1, src_ids.size(1)):
            left, right = level[:, :-1], level[:, 1:]
            pair = torch.cat([left, right], dim=-1)  # [B, S-depth, 2H]
            candidate = torch.tanh(self.candidate(pair))
            w_c, w_l, w_r = torch.softmax(self.gate(pair), dim=-1).unsqueeze(-1).unbind(-2)
            level = w_c * candidate + w_l * left + w_r * right
            levels.append(level)
            masks.append(length_mask(src_lengths - depth, level.size(1)))  # a level is 1 shorter
            done = (src_lengths == depth + 1)[:, None]
            summary = torch.where(done, level[:, 0], summary)
        states = torch.cat(levels, dim=1)  # [B, S(S+1)/2, H]
        mask = torch.cat(masks, dim=1)
        return EncoderOutput(states * mask[..., None], mask, summary)
