"""The compiled CPU layer as PyTorch operators (``torch.library``), for code that traces it.

``torch.export``, ``torch.compile(fullgraph=True)`` and fake tensors run a module on tensors that
hold no data, so they cannot enter a numba kernel (``.numpy()`` of a fake tensor fails). As
operators with a fake implementation (the output's shape and dtype) and a backward, the kernels
become one node of the traced graph, as ``nn.RNN``'s own kernel is:

    elman::rnn_states   (x, A, b, h0, mask, activation, recurrent_mask, per_step)
                        -> states (B, T, H)
    elman::rnn_deltas   (grad_states, states, A, mask, recurrent_mask, activation)
                        -> (δ (B, T, H), ∂L/∂h0 (B, H))

the weight gradients then being plain matrix products (``fused.weight_gradients``). The eager
layer does not come through here: an operator's dispatch costs more than the whole of a small
call's other fixed costs (the README's PyTorch section has the figure), so
``elman.kernels.run_backend`` sends only traced calls.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("elman::rnn_states", mutates_args=(), device_types="cpu")
def rnn_states(
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None,
    per_step: bool,
) -> Tensor:
    """All states (B, T, H), as ``elman.kernels.run_backend(\"fused\", ...)`` computes them
    (``per_step``: by the stepwise kernel, as the dispatch chose for the shape)."""
    with torch.no_grad():
        if per_step:
            from elman.kernels.stepwise import stepwise_rnn as kernel
        else:
            from elman.kernels.fused import fused_rnn as kernel
        return kernel(x, A, b, h0, mask, activation, recurrent_mask)


@rnn_states.register_fake
def _(x, A, b, h0, mask, activation, recurrent_mask, per_step):
    return x.new_empty(x.shape[0], x.shape[1], A.shape[0])


@torch.library.custom_op("elman::rnn_deltas", mutates_args=(), device_types="cpu")
def rnn_deltas(
    grad_states: Tensor,
    states: Tensor,
    A: Tensor,
    mask: Tensor | None,
    recurrent_mask: Tensor | None,
    activation: str,
) -> tuple[Tensor, Tensor]:
    """(δ, ∂L/∂h0): ``elman.kernels.fused.deltas``."""
    from elman.kernels.fused import deltas

    return deltas(grad_states, states, A, mask, recurrent_mask, activation)


@rnn_deltas.register_fake
def _(grad_states, states, A, mask, recurrent_mask, activation):
    return states.new_empty(states.shape), states.new_empty(states.shape[0], states.shape[2])


def _setup_context(ctx, inputs, output) -> None:
    x, A, b, h0, mask, activation, recurrent_mask, _ = inputs
    ctx.save_for_backward(x, A, h0, output)
    ctx.mask, ctx.activation, ctx.has_bias = mask, activation, b is not None
    ctx.recurrent_mask = recurrent_mask


def _backward(ctx, grad_states):
    from elman.kernels.fused import gradients

    return *gradients(ctx, grad_states.contiguous(), rnn_deltas), None, None, None, None


rnn_states.register_autograd(_backward, setup_context=_setup_context)
