"""PyTorch's own RNN kernels (cuDNN on CUDA) computing the Simple RNN, with ``A`` mapped onto
``nn.RNN``'s weights: ``weight_hh = A[:, :H]``, ``weight_ih = A[:, H:]``, ``bias_ih = b``,
``bias_hh = 0``. Gradients flow back into ``A`` and ``b`` through the slices.

nn.RNN skips padding only as a packed sequence whose valid steps come first; any other mask
(such as Keras-style front padding) runs on the reference loop instead, so the result is always
right.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def _leading_lengths(mask: Tensor) -> Tensor | None:
    """Lengths if every row of ``mask`` is some True steps followed only by False ones."""
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)
    leading = steps[None, :] < lengths[:, None]
    return lengths if torch.equal(leading, mask) and bool((lengths > 0).all()) else None


def cudnn_states(
    x: Tensor, A: Tensor, b: Tensor | None, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """Same contract as ``elman.kernels.reference.reference_rnn``: all states (B, T, H)."""
    H = A.shape[0]
    lengths = None
    if mask is not None:
        lengths = _leading_lengths(mask)
        if lengths is None:
            from elman.kernels.reference import reference_rnn

            return reference_rnn(x, A, b, h0, mask, activation)
    # nn.RNN's own entry points (what nn.RNN.forward calls), without building a module.
    run = torch._VF.rnn_tanh if activation == "tanh" else torch._VF.rnn_relu
    weights = [A[:, H:].contiguous(), A[:, :H].contiguous()]  # weight_ih, weight_hh
    if b is not None:
        weights += [b, torch.zeros_like(b)]  # bias_ih, bias_hh
    # Arguments after the weights: has_biases, num_layers, dropout, train, bidirectional.
    options = (b is not None, 1, 0.0, torch.is_grad_enabled(), False)
    if lengths is None:
        with warnings.catch_warnings():
            # A's two halves are not one flat cuDNN buffer; cuDNN copies them (2 KB), and says so.
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            states, _ = run(x, h0[None].contiguous(), weights, *options, True)  # batch_first
        return states
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    hx = h0[None].index_select(1, packed.sorted_indices).contiguous()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part")
        data, _ = run(packed.data, packed.batch_sizes, hx, weights, *options)
    packed_states = PackedSequence(
        data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
    )
    states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=x.shape[1])
    # Padded steps carry the last valid state, as in the reference.
    last = states[torch.arange(x.shape[0]), lengths - 1]
    return torch.where(mask[..., None], states, last[:, None, :])
