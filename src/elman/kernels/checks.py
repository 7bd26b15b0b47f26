"""What every kernel may assume, checked once where a call enters ``elman.kernels``.

The compiled kernels index raw arrays: a state of the wrong batch, a mask of the wrong length or a
token id past the vocabulary would read memory outside its array (and return numbers that change
from call to call) rather than fail. So the dispatch checks shapes, dtypes, devices and id ranges
here, before any of them runs, and raises what PyTorch raises for the same mistake (``ValueError``
for a wrong shape or dtype, ``IndexError`` for an id out of range, as ``nn.Embedding``), with
what was expected and what to do.
"""

from __future__ import annotations

import torch
from torch import Tensor

# What the compiled CPU kernels compute in; other floating dtypes run on the reference loop.
COMPILED_DTYPES = (torch.float32, torch.float64)
ID_DTYPES = (torch.int64, torch.int32)


def _shape(tensor: Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _expect_shape(name: str, tensor: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    if _shape(tensor) != expected:
        raise ValueError(f"{name} must have shape {meaning} = {expected}, got {_shape(tensor)}")


def _expect_on(name: str, tensor: Tensor, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(
            f"{name} is on {tensor.device} but the layer's weights are on {device}: "
            f"move it with .to({str(device)!r})"
        )


def check_weights(A: Tensor, b: Tensor | None, input_size: int) -> None:
    """A (H, H + F) floating, b (H,) or None, both on A's device and of its dtype."""
    if A.dim() != 2 or A.shape[1] != A.shape[0] + input_size:
        raise ValueError(
            f"A must have shape (hidden, hidden + input) = ({A.shape[0]}, "
            f"{A.shape[0] + input_size}) for inputs of {input_size} features, got {_shape(A)}"
        )
    if not A.dtype.is_floating_point:
        raise ValueError(f"the layer's weights must be floating point, got {A.dtype}")
    if b is not None:
        _expect_shape("b", b, (A.shape[0],), "(hidden,)")
        _expect_on("b", b, A.device)
        if b.dtype != A.dtype:
            raise ValueError(f"b is {b.dtype} but A is {A.dtype}: convert the layer with .to()")


def check_layer(
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    recurrent_mask: Tensor | None,
) -> None:
    """The arguments of ``run_backend``: x (B, T, F) of A's dtype and device, h0 (B, H),
    mask (B, T) bool or None, recurrent_mask (B, H) or None."""
    if x.dim() != 3:
        raise ValueError(f"expected input of shape (batch, time, features), got {_shape(x)}")
    (B, T, F), H = x.shape, A.shape[0]
    check_weights(A, b, F)
    _expect_on("the input", x, A.device)
    if not x.dtype.is_floating_point:
        raise ValueError(f"the input must be floating point, got {x.dtype}: use .to({A.dtype})")
    if x.dtype != A.dtype:
        raise ValueError(
            f"the input is {x.dtype} but the layer's weights are {A.dtype}: convert the input "
            f"with .to({A.dtype}) or the layer with .to({x.dtype})"
        )
    _expect_shape("h0", h0, (B, H), "(batch, hidden)")
    _expect_on("h0", h0, A.device)
    if not h0.dtype.is_floating_point:
        raise ValueError(f"h0 must be floating point, got {h0.dtype}")
    if mask is not None:
        _expect_shape("mask", mask, (B, T), "(batch, time)")
        _expect_on("mask", mask, A.device)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool (True where a step is read), got {mask.dtype}")
    if recurrent_mask is not None:
        _expect_shape("recurrent_mask", recurrent_mask, (B, H), "(batch, hidden)")
        _expect_on("recurrent_mask", recurrent_mask, A.device)


def check_ids(
    ids: Tensor, embedding: Tensor, A: Tensor, b: Tensor | None, padding_id: int | None = None
) -> Tensor:
    """The token ids of ``run_ids``/``run_words``: (B, T) integers in [0, V) for an embedding
    (V, F) that A reads, ``padding_id`` one of them. Returns the ids as int64 (what the
    compiled kernels index with)."""
    if ids.dim() != 2:
        raise ValueError(f"expected token ids of shape (batch, time), got {_shape(ids)}")
    if ids.dtype not in ID_DTYPES:
        raise ValueError(
            f"token ids must be int64 or int32, got {ids.dtype}: convert them with .long()"
        )
    if embedding.dim() != 2:
        raise ValueError(f"the embedding must be (vocabulary, features), got {_shape(embedding)}")
    check_weights(A, b, embedding.shape[1])
    _expect_on("the token ids", ids, embedding.device)
    _expect_on("the embedding", embedding, A.device)
    vocabulary = embedding.shape[0]
    if padding_id is not None and not 0 <= padding_id < vocabulary:
        raise IndexError(f"padding id {padding_id} is outside the vocabulary [0, {vocabulary})")
    # On CUDA the lookup checks on the device (as nn.Embedding's does): a host read here would
    # stall every step and could not be recorded in a CUDA graph; traced, there are no values.
    if ids.numel() and ids.device.type == "cpu" and not torch.compiler.is_compiling():
        low, high = torch.aminmax(ids)
        if int(low) < 0 or int(high) >= vocabulary:
            bad = int(low) if int(low) < 0 else int(high)
            raise IndexError(
                f"token id {bad} is outside the vocabulary [0, {vocabulary}): encode the "
                f"text with the model's own vocabulary (ids from 0 to {vocabulary - 1})"
            )
    return ids.long()


def check_lengths(lengths: Tensor, batch: int, steps: int) -> None:
    """Valid steps per row (B,), each in 0..T."""
    _expect_shape("lengths", lengths, (batch,), "(batch,)")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, got {lengths.dtype}")
    if lengths.numel() and not torch.compiler.is_compiling():
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > steps:
            raise ValueError(f"lengths must lie in [0, {steps}] (the steps), got {low}..{high}")


def check_start(start: Tensor, ids: Tensor) -> None:
    """``run_words``' start (B,): where each row's words begin, 0..T."""
    _expect_shape("start", start, (ids.shape[0],), "(batch,)")
    if start.numel() and (int(start.min()) < 0 or int(start.max()) > ids.shape[1]):
        raise ValueError(f"start must lie in [0, {ids.shape[1]}] (the time steps)")
