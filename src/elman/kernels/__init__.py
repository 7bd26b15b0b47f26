"""Every implementation of the Simple RNN, and the ONE place that chooses between them.

    reference.py   the formula (``rnn_cell``) and the plain loop (``reference_rnn``): the oracle
    loops.py       numba building blocks shared by the compiled kernels
    fused.py       the layer on CPU: one matmul for the inputs, a compiled loop for the recurrence
    stepwise.py    the same design for wide shapes: one matrix-matrix product per step (BLAS)
    ids.py         embedding + layer over token ids on CPU, padding read once
    diagonal.py    IndRNN's recurrence (u ⊙ h_{t-1} instead of a matrix): a compiled loop
    cuda.py        PyTorch's cuDNN RNN with ``A`` mapped onto its weights
    ops.py         the compiled CPU layer as PyTorch operators, for torch.export and compile
    checks.py      what every kernel may assume, checked where a call comes in

``run_backend`` (input vectors) and ``run_ids`` (token ids) take a backend name (``BACKENDS``)
and pick the implementation; each computes what ``reference_rnn`` computes. ``run_diagonal``
does the same for IndRNN's recurrence and ``reference_diagonal``. The first two check their
arguments first (``checks``): the compiled kernels index raw arrays and trust what they get.
The compiled kernels are imported only when used, so importing the layer stays light.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from elman.kernels.checks import (
    COMPILED_DTYPES,
    check_ids,
    check_layer,
    check_lengths,
    check_start,
)
from elman.kernels.reference import reference_diagonal, reference_rnn

BACKENDS = ("auto", "reference", "fused", "torch")
__all__ = ["BACKENDS", "check_lengths", "resolve", "run_backend", "run_ids", "run_words"]
__all__ += ["run_diagonal"]
__all__ += ["per_step_products", "traced", "words_start"]


def resolve(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """``auto`` -> the fastest correct path for the device: fused on CPU (float32 and float64;
    the reference loop for other dtypes, such as bfloat16), cuDNN on CUDA. ``fused`` asked for
    where it cannot run is an error that says so."""
    if backend == "auto":
        if device.type == "cuda":
            return "torch"
        return "fused" if device.type == "cpu" and dtype in COMPILED_DTYPES else "reference"
    if backend == "fused" and (device.type != "cpu" or dtype not in COMPILED_DTYPES):
        raise ValueError(
            f"backend='fused' runs on the CPU in float32 or float64, got {dtype} on "
            f"{device.type}: use backend='auto' (cuDNN on CUDA, the reference loop for other "
            f"dtypes) or convert the layer and its input with .float()"
        )
    return backend


def traced(*tensors: Tensor) -> bool:
    """Whether the layer runs under torch.compile/torch.export or on tensors without data (fake
    or meta): the compiled kernels then run as operators (``elman.kernels.ops``)."""
    if torch.compiler.is_compiling():
        return True
    return any(type(t) not in _PLAIN or t.is_meta for t in tensors)


_PLAIN = (Tensor, torch.nn.Parameter)  # tensors with data (subclasses: fake, functional...)


def per_step_products(batch: int, hidden: int) -> bool:
    """Whether the fused CPU layer runs each step as one matrix-matrix product (``stepwise``)
    rather than rows four at a time (``fused``): the four-row kernel streams ``W_h`` once per
    group of four rows each step, the matrix product once per step for the whole batch. So the
    product wins where ``W_h`` leaves a core's second-level cache (H = 512, from 16 rows) or the
    batch is wide (128 rows or more with batch × hidden ≥ 32768). The thresholds were measured
    with ``benchmarks/layer.py`` (the README's speed section has the grid)."""
    if hidden >= 512:
        return batch >= 16
    return batch >= 128 and batch * hidden >= 32768


def run_backend(
    backend: str,
    x: Tensor,
    A: Tensor,
    b: Tensor | None,
    h0: Tensor,
    mask: Tensor | None,
    activation: str,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """All states (B, T, H) of the layer over x (B, T, F) from h0 (B, H); ``mask`` (B, T) bool
    or None marks the steps read, ``recurrent_mask`` (B, H) or None is recurrent dropout's (see
    ``reference_rnn``). cuDNN has no recurrent dropout: with one, CUDA runs the reference."""
    check_layer(x, A, b, h0, mask, recurrent_mask)
    backend = resolve(backend, x.device, x.dtype)
    if backend == "reference" or (backend == "torch" and recurrent_mask is not None):
        return reference_rnn(x, A, b, h0, mask, activation, recurrent_mask)
    if backend == "fused":
        per_step = per_step_products(x.shape[0], A.shape[0])
        if traced(x, A, h0):
            from elman.kernels.ops import rnn_states

            return rnn_states(x, A, b, h0, mask, activation, recurrent_mask, per_step)
        if per_step:
            from elman.kernels.stepwise import stepwise_rnn as kernel
        else:
            from elman.kernels.fused import fused_rnn as kernel
        return kernel(x, A, b, h0, mask, activation, recurrent_mask)
    from elman.kernels.cuda import cudnn_states

    return cudnn_states(x, A, b, h0, mask, activation)


def run_diagonal(
    backend: str, z: Tensor, u: Tensor, h0: Tensor, mask: Tensor | None, activation: str
) -> Tensor:
    """IndRNN's states (B, T, H) from the input parts z (B, T, H), the recurrent weights u (H,)
    and h0 (B, H); ``mask`` as in ``run_backend``. The compiled loop on CPU (``fused``/``auto``
    in float32 or float64, not traced), the reference loop elsewhere (cuDNN has no such cell)."""
    if backend == "torch" or resolve(backend, z.device, z.dtype) != "fused" or traced(z, u):
        return reference_diagonal(z, u, h0, mask, activation)
    from elman.kernels.diagonal import diagonal_rnn

    return diagonal_rnn(z, u, h0, mask, activation)


def run_ids(
    backend: str,
    ids: Tensor,
    embedding: Tensor,
    A: Tensor,
    b: Tensor | None,
    activation: str,
    padding_id: int,
    last_only: bool,
    cache: dict | None = None,
    input_mask: Tensor | None = None,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """The layer over ``embedding[ids]`` from a zero state, padding (``padding_id``) included:
    the last state (B, H) if ``last_only``, else all states (B, T, H).

    On CPU every backend reads the padding once (``elman.kernels.ids``); ``fused`` also fuses
    the embedding into the compiled loop. On CUDA, cuDNN reads all steps (faster than skipping).
    ``cache`` is the caller's dict for the inference table of the fused path.

    Dropout's masks, ``input_mask`` (B, F) and ``recurrent_mask`` (B, H), apply to the steps
    that read words. The padding in front carries no information; it is read once, undropped,
    on every device, so that dropout keeps the shared trajectory and its speed. (Keras drops on
    padding steps too: ``layer(F.embedding(ids, embedding))`` does that.)

    Traced (``traced``), every step reads its embedding, padding included, through the layer's
    operator; with dropout, the masks then apply to the padding too."""
    ids = check_ids(ids, embedding, A, b, padding_id)
    backend = resolve(backend, ids.device, embedding.dtype)
    is_traced = traced(ids, embedding, A)
    if backend == "fused" and input_mask is None and not is_traced:
        from elman.kernels.ids import fused_over_ids

        return fused_over_ids(
            ids, embedding, A, b, activation, padding_id, last_only, cache, recurrent_mask
        )
    x = F.embedding(ids, embedding)  # (B, T, F)
    zero = embedding.new_zeros(1, A.shape[0])
    dropping = input_mask is not None or recurrent_mask is not None
    if is_traced or (ids.device.type != "cpu" and not dropping):
        x = x if input_mask is None else x * input_mask[:, None, :]
        h0 = zero.expand(len(ids), -1)
        states = run_backend(backend, x, A, b, h0, None, activation, recurrent_mask)
        return states[:, -1] if last_only else states
    from elman.kernels.ids import start_after_padding, with_padding_states

    padding, h0, shared = start_after_padding(
        ids,
        padding_id,
        zero,
        lambda n: run_backend(
            backend, embedding[padding_id].expand(1, n, -1), A, b, zero, None, activation
        )[0],
    )
    is_word = torch.arange(ids.shape[1], device=ids.device)[None, :] >= padding[:, None]
    x = x if input_mask is None else x * input_mask[:, None, :]
    states = run_backend(backend, x, A, b, h0, is_word, activation, recurrent_mask)
    return states[:, -1] if last_only else with_padding_states(states, padding, shared)


def words_start(
    backend: str, ids: Tensor, padding_id: int, dtype: torch.dtype = torch.float32
) -> Tensor | None:
    """Where each row's words begin (B,), if the token-id kernel can read the words alone:
    the fused backend on CPU, and every row's words running to its end (padding in front, as
    IMDB's reviews are padded). None otherwise: the caller runs the layer with a mask."""
    if resolve(backend, ids.device, dtype) != "fused" or traced(ids):
        return None
    is_word = ids != padding_id
    start = torch.where(is_word.any(1), is_word.int().argmax(1), ids.shape[1])
    # Words from the first one to the end, with no padding id between them (the kernel would
    # read it as a word where the mask skips it).
    if not bool((is_word.sum(1) == ids.shape[1] - start).all()):
        return None
    return start


def run_words(
    ids: Tensor,
    start: Tensor,
    embedding: Tensor,
    A: Tensor,
    b: Tensor | None,
    activation: str,
    backwards: bool,
    last_only: bool,
    recurrent_mask: Tensor | None = None,
) -> Tensor:
    """The layer over each row's words only, ``ids[b, start[b]:]`` (``words_start``), the
    padding masked: ``SimpleRNN(x, mask=ids != padding_id)``, ``go_backwards`` if
    ``backwards``, by the fused token-id kernel. The last state (B, H) if ``last_only``, else
    all states (B, T, H) in reading order."""
    from elman.kernels.ids import fused_over_words

    ids = check_ids(ids, embedding, A, b)
    check_start(start, ids)
    resolve("fused", ids.device, embedding.dtype)  # (the token-id kernel is fused's)

    return fused_over_words(
        ids, start, embedding, A, b, activation, backwards, last_only, recurrent_mask
    )
