"""PyTorch's own RNN kernels (cuDNN on CUDA) computing the Simple RNN, with ``A`` mapped onto
``nn.RNN``'s weights: ``weight_hh = A[:, :H]``, ``weight_ih = A[:, H:]``, ``bias_ih = b``,
``bias_hh = 0``. Gradients flow back into ``A`` and ``b`` through the slices.

nn.RNN skips padding only as a packed sequence whose valid steps come first; any other mask
(such as Keras-style front padding) runs on the reference loop instead, so the result is always
right.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def _leading_lengths(mask: Tensor) -> Tensor | None:
    """Lengths if every row of ``mask`` is some True steps followed only by False ones."""
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)
    leading = steps[None, :] < lengths[:, None]
    return lengths if torch.equal(leading, mask) and bool((lengths > 0).all()) else None


def torch_rnn(
    x: Tensor, A: Tensor, b: Tensor | None, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """Same contract as ``elman.rnn.reference_rnn``: all states (B, T, H)."""
    H, F = A.shape[0], A.shape[1] - A.shape[0]
    lengths = None
    if mask is not None:
        lengths = _leading_lengths(mask)
        if lengths is None:
            from elman.rnn import reference_rnn

            return reference_rnn(x, A, b, h0, mask, activation)
    shell = nn.RNN(
        F, H, nonlinearity=activation, bias=b is not None, batch_first=True, device="meta"
    )
    weights = {"weight_ih_l0": A[:, H:], "weight_hh_l0": A[:, :H]}
    if b is not None:
        weights |= {"bias_ih_l0": b, "bias_hh_l0": torch.zeros_like(b)}
    weights = {name: w.contiguous() for name, w in weights.items()}
    if lengths is None:
        states, _ = torch.func.functional_call(shell, weights, (x, h0[None]))
        return states
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_states, _ = torch.func.functional_call(shell, weights, (packed, h0[None]))
    states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=x.shape[1])
    # Padded steps carry the last valid state, as in the reference.
    last = states[torch.arange(x.shape[0]), lengths - 1]
    return torch.where(mask[..., None], states, last[:, None, :])
