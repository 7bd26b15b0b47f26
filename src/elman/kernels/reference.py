"""The reference implementation: the textbook formula and a plain loop over time, with autograd.

Every fast kernel in ``elman.kernels`` computes exactly what ``reference_rnn`` computes, and the
tests hold them equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}


def needs_autograd(*tensors: Tensor | None) -> bool:
    """Whether a kernel must record for backward: gradients on, and an input that wants one.
    (Without, the fast kernels skip autograd and keep nothing for a backward pass.)"""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def rnn_cell(h_prev: Tensor, x_t: Tensor, A: Tensor, b: Tensor | None, activation: str) -> Tensor:
    """One step of the Simple RNN: ``act(A · [h_prev; x_t] + b)``.

    h_prev: (B, H), x_t: (B, F), A: (H, H + F), b: (H,) or None. Returns (B, H).
    """
    pre = torch.cat([h_prev, x_t], dim=-1) @ A.T
    if b is not None:
        pre = pre + b
    return ACTIVATIONS[activation](pre)


def reference_rnn(
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """Run ``rnn_cell`` over time, one step after the other.

    x: (B, T, F), h0: (B, H), mask: (B, T) bool or None. Where ``mask[:, t]`` is False the state
    is carried over unchanged, so padded positions have no effect. ``recurrent_mask`` (B, H)
    (recurrent dropout, scaled) multiplies h_{t-1} where it enters each step (Keras' meaning).
    Returns all states (B, T, H).
    """
    h = h0
    states = []
    for t in range(x.shape[1]):
        h_in = h if recurrent_mask is None else h * recurrent_mask
        h_new = rnn_cell(h_in, x[:, t], A, b, activation)
        h = h_new if mask is None else torch.where(mask[:, t, None], h_new, h)
        states.append(h)
    return torch.stack(states, dim=1)


def reference_diagonal(
    z: Tensor, u: Tensor, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """IndRNN's recurrence (Li et al. 2018), one step after the other: h_t = act(z_t + u ⊙ h_{t-1}).

    z: (B, T, H) the input part W · x_t + b of every step, u: (H,) each unit's own recurrent
    weight, h0: (B, H), mask: (B, T) bool or None (False: the state is carried). Returns all
    states (B, T, H).
    """
    h, states = h0, []
    for t in range(z.shape[1]):
        h_new = ACTIVATIONS[activation](z[:, t] + u * h)
        h = h_new if mask is None else torch.where(mask[:, t, None], h_new, h)
        states.append(h)
    return torch.stack(states, dim=1)


def lengths_to_mask(lengths: Tensor, steps: int, padding: str = "post") -> Tensor:
    """(B,) valid lengths -> (B, T) bool mask. ``padding="post"``: the valid steps come first
    (PyTorch's convention); ``"pre"``: they come last (Keras' default for padded reviews)."""
    positions = torch.arange(steps, device=lengths.device)
    if padding == "post":
        return positions[None, :] < lengths[:, None]
    if padding == "pre":
        return positions[None, :] >= (steps - lengths)[:, None]
    raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
