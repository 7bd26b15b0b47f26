"""The networks: review classifiers built around ``SimpleRNN``, and their Keras-style summary.

Architectures (``ModelConfig.architecture``):
- ``rnn``: Embedding(vocab, E) -> SimpleRNN(H), last state -> Dense(1). The reference model:
  10,000·32 + 2,080 + 33 = 322,113 parameters.
- ``rnn-all-states``: the same, but all states h_1..h_T are flattened into Dense(1)
  (T·H + 1 = 16,001 weights for T=500, H=32).
- ``shallow``: Embedding(vocab, E) on the last ``max_len`` words -> flatten -> Dense(1); the
  naive baseline (E=8, max_len=20).

Every model maps ids (B, T) to logits (B,); the sigmoid is applied in the loss (stable) and in
``predict_proba``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from elman.data.text import PAD
from elman.errors import UserError, require_positive
from elman.rnn import ACTIVATIONS, SimpleRNN

ARCHITECTURES = ("rnn", "rnn-all-states", "shallow")


@dataclass
class ModelConfig:
    architecture: str = "rnn"
    vocab_size: int = 10_000
    embedding_dim: int = 32
    hidden_size: int = 32
    max_len: int = 500
    activation: str = "tanh"

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise UserError(
                f"unknown model {self.architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {sorted(ACTIVATIONS)}")
        require_positive(self, "vocab_size", "embedding_dim", "hidden_size", "max_len")


def keras_dense_init(layer: nn.Linear) -> None:
    """Glorot-uniform weights and zero bias (Keras' Dense defaults; torch uses Kaiming)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


class ReviewClassifier(nn.Module):
    """ids (B, T) int64 -> logits (B,). See the module docstring for the architectures."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        E, H, T = config.embedding_dim, config.hidden_size, config.max_len
        self.embedding = nn.Embedding(config.vocab_size, E)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)  # Keras' embedding initializer
        if config.architecture == "shallow":
            self.rnn = None
            features = T * E
        else:
            all_states = config.architecture == "rnn-all-states"
            self.rnn = SimpleRNN(E, H, activation=config.activation, return_sequences=all_states)
            features = T * H if all_states else H
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(features, 1)
        keras_dense_init(self.dense)

    def forward(self, ids: Tensor) -> Tensor:
        if self._can_read_ids_directly(ids):
            return self.dense(self._last_state_from_ids(ids)).squeeze(-1)
        x = self.embedding(ids)  # (B, T, E)
        if self.rnn is not None:
            states = self._rnn_states(ids, x) if self.share_padding else self.rnn.states(x)
            x = states if self.rnn.return_sequences else states[:, -1]  # (B, T, H) or (B, H)
        return self.dense(self.flatten(x)).squeeze(-1)

    # Reviews are padded at the front (Keras' default) and, as in the reference model, the RNN
    # reads the padding too. But every review's padding is the same input read from the same zero
    # state, so the states over it are ONE trajectory shared by all reviews: compute it once, on a
    # single row, start each review from that trajectory at its own padding length, and skip its
    # padded steps. Same function, same gradients (autograd flows through the shared row), and
    # about half the work: the median review fills 176 of 500 steps.
    share_padding: bool = True

    def _leading_padding(self, ids: Tensor) -> Tensor:
        """(B,) how many PAD ids each row starts with (T for a row of padding only)."""
        is_word = ids != PAD
        return torch.where(is_word.any(1), is_word.int().argmax(1), ids.shape[1])

    def _padding_trajectory(self, longest: int, pad_input: Tensor) -> Tensor:
        """States after 1..longest padding steps from the zero state, (longest, H).
        ``pad_input`` (E,) is the padding's embedding."""
        return self.rnn.states(pad_input.expand(1, longest, -1))[0]

    def _rnn_states(self, ids: Tensor, x: Tensor) -> Tensor:
        """RNN states (B, T', H), computing the shared leading-padding part only once. T' = T
        with ``return_sequences``; otherwise leading columns of padding only may be dropped."""
        steps = ids.shape[1]
        padding = self._leading_padding(ids)
        longest = int(padding.max())
        if longest == 0:
            return self.rnn.states(x)
        shared = self._padding_trajectory(longest, self.embedding.weight[PAD])
        zero = shared.new_zeros(1, shared.shape[1])
        h0 = torch.cat([zero, shared])[padding]  # each review's state when its words begin
        if not self.rnn.return_sequences:
            # Only the last state is used, so columns that are padding in every row can go
            # (many of them when batches hold reviews of similar length: --bucket).
            common = int(padding.min())
            x, padding, steps = x[:, common:], padding - common, steps - common
        positions = torch.arange(steps, device=ids.device)
        mask = positions[None, :] >= padding[:, None]
        states = self.rnn.states(x, h0, mask=mask)
        if not self.rnn.return_sequences:
            return states  # the last state is right already; padded steps only carried h0
        over_padding = torch.cat([shared, shared.new_zeros(steps - longest, shared.shape[1])])
        return torch.where(mask[..., None], states, over_padding)

    # Inference fast path: see ``elman.kernels.fused.last_state_from_ids``.
    def _can_read_ids_directly(self, ids: Tensor) -> bool:
        return (
            self.rnn is not None
            and not self.rnn.return_sequences
            and self.rnn.backend in ("auto", "fused")
            and ids.device.type == "cpu"
            and not torch.is_grad_enabled()
        )

    def _vocabulary_projection(self) -> Tensor:
        """``E · W_xᵀ + b`` (V, H), recomputed only when a weight changed (any in-place update
        or load bumps the tensors' version counters)."""
        weights = [self.embedding.weight, self.rnn.A] + (
            [self.rnn.b] if self.rnn.b is not None else []
        )
        key = tuple((w.data_ptr(), w._version) for w in weights)
        cached = self.__dict__.get("_projection_cache")
        if cached is None or cached[0] != key:
            from elman.kernels.fused import input_projection

            table = input_projection(self.embedding.weight[None], self.rnn.A, self.rnn.b)[0]
            self.__dict__["_projection_cache"] = cached = (key, table)
        return cached[1]

    def _last_state_from_ids(self, ids: Tensor) -> Tensor:
        from elman.kernels.fused import last_state_from_ids, recurrence

        table = self._vocabulary_projection()
        H = self.rnn.hidden_size
        padding = self._leading_padding(ids)
        longest = int(padding.max())
        h0 = table.new_zeros(ids.shape[0], H)
        if longest > 0:  # start each row after its padding, from the shared trajectory
            W_h = self.rnn.A[:, :H]
            pad_projection = table[PAD].expand(1, longest, H)
            shared = recurrence(
                pad_projection, W_h, table.new_zeros(1, H), None, self.rnn.activation
            )[0]
            h0 = torch.cat([table.new_zeros(1, H), shared])[padding]
        return last_state_from_ids(ids, table, self.rnn.A[:, :H], h0, padding, self.rnn.activation)

    @torch.no_grad()
    def predict_proba(self, ids: Tensor) -> Tensor:
        """Probability that each review is positive, (B,)."""
        return torch.sigmoid(self(ids))


def summary(model: ReviewClassifier, batch_size: int = 1) -> str:
    """A Keras-style table: layer, output shape, parameters, totals, trainable / non-trainable."""
    from torchinfo import summary as torchinfo_summary

    example = torch.zeros(batch_size, model.config.max_len, dtype=torch.long)
    stats = torchinfo_summary(
        model,
        input_data=[example],
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        depth=1,
        verbose=0,
    )
    # Keep the Keras part of torchinfo's report (layers, totals); drop its memory estimates.
    lines = str(stats).splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("Non-trainable params"))
    return "\n".join(lines[: end + 1] + [lines[0]])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
