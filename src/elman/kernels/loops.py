"""The numba building blocks every compiled kernel shares (``fused`` for the layer, ``ids`` for
token ids): a float32 tanh, one step of the recurrence on one row, and the split of a batch's
rows between threads, and the call of a compiled function through its address (``call_at``).
Importing it checks which threads numba will run the kernels on."""

from __future__ import annotations

import functools
import warnings

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic

TANH, RELU = 0, 1
ACTIVATION_CODES = {"tanh": TANH, "relu": RELU}

# tanh for float32 as a rational function (the minimax fit Eigen uses): libm's scalar tanh was
# 80% of the forward pass; this one vectorises and stays within 3e-7 relative error of the
# exact value (float32 rounding is 6e-8). float64 keeps the exact np.tanh.
_F32 = np.float32
_ALPHA = [
    _F32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
]
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = _ALPHA
_B0, _B2, _B4, _B6 = (
    _F32(c)
    for c in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)
_CLAMP = _F32(7.99881172180175781)  # tanh rounds to ±1 in float32 beyond this


@njit(inline="always")
def tanh_float32(x):
    # Written so that NaN falls through both comparisons: a NaN input gives NaN, as np.tanh.
    c = _CLAMP if x > _CLAMP else x
    c = -_CLAMP if c < -_CLAMP else c
    c2 = c * c
    p = ((((((c2 * _A13 + _A11) * c2 + _A9) * c2 + _A7) * c2 + _A5) * c2 + _A3) * c2 + _A1) * c
    q = ((c2 * _B6 + _B4) * c2 + _B2) * c2 + _B0
    return p / q


@njit(inline="always")
def activate(pre, out, activation, exact_tanh):
    """out[i] = act(pre[i]) over a row; branches are loop-invariant, so each loop vectorises."""
    if activation == RELU:
        for i in range(pre.shape[0]):
            out[i] = pre[i] if pre[i] > 0 else 0.0
    elif exact_tanh:
        for i in range(pre.shape[0]):
            out[i] = np.tanh(pre[i])
    else:
        for i in range(pre.shape[0]):
            out[i] = tanh_float32(pre[i])


@njit(inline="always")
def times_derivative(grad, states, out, activation):
    """out[i] = grad[i] · act'(pre_i) over a row, act' read from the states the step produced:
    1 - h² for tanh, [h > 0] for relu (``out`` may be ``grad``). Loop-invariant branches."""
    if activation == RELU:
        for i in range(grad.shape[0]):
            out[i] = grad[i] if states[i] > 0 else 0.0
    else:
        for i in range(grad.shape[0]):
            out[i] = grad[i] * (1.0 - states[i] * states[i])


def slow_threads_warning() -> str | None:
    """What to do if numba would run the kernels' parallel loops on slow threads, else None.

    numba takes the first threading layer it can load: TBB, then OpenMP, then its own workqueue.
    OpenMP needs the system's GNU OpenMP runtime (libgomp), which numba does not ship. Beside
    torch's own OpenMP threads, TBB and the workqueue ran the layer 1.4-2.0x slower than OpenMP
    (measured in the docs' speed page). A layer the user
    chose (``NUMBA_THREADING_LAYER``) is left alone."""
    if numba.config.THREADING_LAYER != "default":
        return None
    numba.get_num_threads()  # (starts numba's threads, which picks the layer)
    layer = numba.threading_layer()
    if layer == "omp":
        return None
    return (
        f"numba runs elman's CPU kernels on its {layer!r} threads, 1.4-2.0x slower than on "
        "OpenMP: install the GNU OpenMP runtime (Debian/Ubuntu: apt install libgomp1), "
        "or set NUMBA_THREADING_LAYER=omp where it is installed"
    )


if (_slow := slow_threads_warning()) is not None:
    warnings.warn(_slow, RuntimeWarning, stacklevel=2)


# The kernels may reassociate sums (so LLVM vectorises each dot product) and fuse multiply-adds;
# nothing else of fastmath (NaN and infinity still propagate, so a diverging loss is seen). The
# order is fixed when the kernel is compiled: every run gives the same bits.
FASTMATH = {"reassoc", "contract"}
# A float division by zero gives inf or NaN (NumPy's rule) instead of raising (Python's, numba's
# default): without the test numba puts before every division, tanh's division vectorises; the
# same bits, faster.
ERRORS = "numpy"


@njit(inline="always")
def copy_row(source, target):
    """target[:] = source, as a plain loop (numba's slice assignment costs more for 32 floats)."""
    for i in range(source.shape[0]):
        target[i] = source[i]


@njit(inline="always")
def dot_rows(M, v, out):
    """out[i] += M[i, :] · v, for a small square M (each row a contiguous dot product)."""
    n = v.shape[0]
    for i in range(n):
        s = out[i]
        for j in range(n):
            s += M[i, j] * v[j]
        out[i] = s


@njit(inline="always")
def products_of_four(M, V, out):
    """out[r, :] += Σ_k V[r, k] · M[k, :] for the four rows r of V and out, M (n, n): each row of
    M read once for four rows, and every inner loop contiguous over out's row, so it vectorises
    with no horizontal sums (a row's dot products, ``dot_rows``, end in one per element). Four
    rows of M go in each pass too, so out is loaded and stored a quarter as often: at H = 32 to
    64 those loads and stores, not the multiplies, bound the loop."""
    n = M.shape[0]
    out0, out1, out2, out3 = out[0], out[1], out[2], out[3]
    k = 0
    while k + 3 < n:
        m0, m1, m2, m3 = M[k], M[k + 1], M[k + 2], M[k + 3]
        a0, a1, a2, a3 = V[0, k], V[0, k + 1], V[0, k + 2], V[0, k + 3]
        b0, b1, b2, b3 = V[1, k], V[1, k + 1], V[1, k + 2], V[1, k + 3]
        c0, c1, c2, c3 = V[2, k], V[2, k + 1], V[2, k + 2], V[2, k + 3]
        d0, d1, d2, d3 = V[3, k], V[3, k + 1], V[3, k + 2], V[3, k + 3]
        for j in range(n):
            x0, x1, x2, x3 = m0[j], m1[j], m2[j], m3[j]
            out0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            out1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            out2[j] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
            out3[j] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
        k += 4
    while k < n:  # the last n mod 4 rows of M
        row = M[k]
        a0, b0, c0, d0 = V[0, k], V[1, k], V[2, k], V[3, k]
        for j in range(n):
            x0 = row[j]
            out0[j] += a0 * x0
            out1[j] += b0 * x0
            out2[j] += c0 * x0
            out3[j] += d0 * x0
        k += 1


@njit(inline="always")
def recurrent_products_of_four(pre, W_hT, h, drop, use_drop, rows, read):
    """pre[r] += W_h · (h[r] ⊙ drop[rows[r]]) for four rows r (``drop`` only if ``use_drop``;
    ``read`` (4, H) is scratch, ``W_hT`` = W_hᵀ): a four-row step before its activation."""
    if use_drop:
        for r in range(4):
            for i in range(h.shape[1]):
                read[r, i] = h[r, i] * drop[rows[r], i]
    products_of_four(W_hT, read if use_drop else h, pre)


@njit(inline="always")
def transposed_for_fours(M, fours):
    """Mᵀ as a contiguous array when a thread runs rows four at a time (``fours``, from
    ``partition``: the four-row loops read M the other way round from the one-row loops), else
    an empty one."""
    if fours.sum():
        return np.ascontiguousarray(M.T)
    return np.empty((0, 0), dtype=M.dtype)


@njit(inline="always")
def outer_products_of_four(V, U, out):
    """out[i, :] += Σ_r V[r, i] · U[r, :] over the four rows r of V and U (n wide), out (n, n):
    four rows' outer products added in one pass over out (a weight gradient's Σ δ ⊗ h)."""
    n = out.shape[0]
    for i in range(n):
        row = out[i]
        v0, v1, v2, v3 = V[0, i], V[1, i], V[2, i], V[3, i]
        for j in range(n):
            row[j] += v0 * U[0, j] + v1 * U[1, j] + v2 * U[2, j] + v3 * U[3, j]


@njit(inline="always")
def step(pre, W_h, h, activation, exact_tanh):
    """h <- act(pre + W_h · h), with ``pre`` holding the input projection on entry."""
    dot_rows(W_h, h, pre)
    activate(pre, h, activation, exact_tanh)


@njit(inline="always")
def dropped_step(pre, W_h, h, drop, dropped, activation, exact_tanh):
    """h <- act(pre + W_h · (h ⊙ drop)): a step under recurrent dropout, whose mask is an
    elementwise multiply inside the loop; ``dropped`` is scratch of h's size."""
    for i in range(h.shape[0]):
        dropped[i] = h[i] * drop[i]
    dot_rows(W_h, dropped, pre)
    activate(pre, h, activation, exact_tanh)


# A parallel loop's callees, compiled once ------------------------------------------------------
#
# numba compiles a parallel (``prange``) function in four layers (the function, the loop's body,
# two wrappers) and links every function the loop calls into each: the callees' code is
# optimised and turned into machine code four times over. A callee the loop reaches through its
# address instead, compiled on its own as a C function (a numba ``cfunc``, kept on disk like the
# rest), is compiled once; the call costs a few microseconds per kernel call, and the bits are
# the same. Compiling the token-id kernels' forward and backward took 9.9 and 8.0 s, now 5.9
# and 4.3; the layer's first training step on the fused kernels 17.1 s, now 8.5.

_COMPILED_ALONE: dict = {}


def compiled_alone(function: numba.core.dispatcher.Dispatcher, arguments: tuple) -> int:
    """The address of the ``@njit`` ``function`` compiled on its own as a C function of
    ``arguments``' types (its options kept; once per dtypes, then from disk), for ``call_at``.
    The arguments are C-contiguous arrays, each always of the same rank, and scalars."""
    key = (function, *(getattr(argument, "dtype", type(argument)) for argument in arguments))
    compiled = _COMPILED_ALONE.get(key)
    if compiled is None:
        arrays = [argument for argument in arguments if isinstance(argument, np.ndarray)]
        if not all(array.flags.c_contiguous for array in arrays):
            raise ValueError(f"{function.__name__} is compiled alone for C-contiguous arrays")
        signature = types.void(*(numba.typeof(argument) for argument in arguments))
        compiled = numba.cfunc(signature, cache=True, **function.targetoptions)(function.py_func)
        # (the first kept wins: an address another thread got must stay compiled)
        compiled = _COMPILED_ALONE.setdefault(key, compiled)
    return compiled.address


@intrinsic
def call_at(typingctx, address, arguments):
    """``function(*arguments)`` in compiled code, for the function at ``address`` (an int64,
    from ``compiled_alone``). Its arrays must be C-contiguous, as it was compiled for."""
    if any(isinstance(kind, types.Array) and kind.layout != "C" for kind in arguments.types):
        raise errors.TypingError(f"call_at takes C-contiguous arrays, got {arguments}")

    def codegen(context, builder, signature, values):
        parameters = [context.get_value_type(kind) for kind in arguments.types]
        function_type = ir.FunctionType(context.get_value_type(types.none), parameters)
        function = builder.inttoptr(values[0], function_type.as_pointer())
        builder.call(function, cgutils.unpack_tuple(builder, values[1]))
        return context.get_dummy_value()

    return types.void(address, arguments), codegen


def drop_arguments(drop: torch.Tensor | None, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
    """The kernels' recurrent-dropout arguments: the (B, H) mask and whether to use it."""
    if drop is None:
        return _no_drop(dtype), False
    return drop.detach().to(dtype).contiguous().numpy(), True


@functools.cache
def _no_drop(dtype: torch.dtype) -> np.ndarray:
    """The placeholder mask (never read, never written) a kernel takes without dropout: one per
    dtype, made once (a new array a call cost a tenth of a B=32, T=100, H=32 inference call's
    fixed costs)."""
    return np.ones((1, 1), dtype=torch.empty(0, dtype=dtype).numpy().dtype)


def _units(rows: int, threads: int) -> tuple[int, int, int]:
    """(groups of four, units: those groups then the last rows mod 4 alone, threads used: no
    more than units)."""
    groups = rows // 4
    units = groups + rows - 4 * groups
    return groups, units, max(1, min(units, threads))


def even_partition(rows: int) -> tuple[np.ndarray, ...]:
    """``partition`` of ``rows`` rows that all compute the same steps (no mask): contiguous
    runs of fours, no sorting. Made once per batch size and thread count: the arrays are shared
    between calls, and the kernels only read them."""
    return _even_partition(rows, torch.get_num_threads())


@functools.lru_cache(maxsize=256)
def _even_partition(rows: int, threads: int) -> tuple[np.ndarray, ...]:
    groups, units, threads = _units(rows, threads)
    unit_bounds = np.arange(threads + 1, dtype=np.int64) * units // threads
    in_groups = np.minimum(unit_bounds, groups)
    bounds = 4 * in_groups + (unit_bounds - in_groups)
    return np.arange(rows, dtype=np.int64), bounds, np.diff(in_groups)


def partition(work: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows for each thread, balanced by ``work`` (B,), the steps each row computes.

    The rows are first grouped in fours, which the kernels run together: rows ranked by work
    (longest first, ties by row number), four by four, the last B mod 4 alone; a group costs four
    times its longest row. The groups depend on ``work`` alone, so the same rows go together, and
    the same bits come out, on any thread count. Then longest first, each to the least-loaded
    thread (reviews differ in length tenfold, so equal row counts leave one core idle).

    Returns ``order`` (B,), ``bounds`` (threads + 1,) and ``fours`` (threads,): thread k takes
    rows ``order[bounds[k]:bounds[k + 1]]``, the first ``4 · fours[k]`` of them four at a time.
    Depends only on ``work`` and the thread count, so results are reproducible."""
    work = np.asarray(work)
    if len(work) and np.all(work == work[0]):  # (the same for every row: no sorting)
        return even_partition(len(work))
    groups, units, threads = _units(len(work), torch.get_num_threads())
    ranked = np.argsort(-work, kind="stable")
    load = [0] * threads
    assigned: list[list[list[int]]] = [[[], []] for _ in range(threads)]  # [grouped, single]
    for unit in range(units):
        grouped = unit < groups
        rows = ranked[4 * unit : 4 * unit + 4] if grouped else ranked[3 * groups + unit :][:1]
        k = load.index(min(load))
        assigned[k][0 if grouped else 1].extend(int(row) for row in rows)
        load[k] += int(work[rows[0]]) * len(rows)
    order = np.array([row for rows in assigned for row in rows[0] + sorted(rows[1])], np.int64)
    bounds = np.cumsum([0] + [len(rows[0]) + len(rows[1]) for rows in assigned]).astype(np.int64)
    return order, bounds, np.array([len(rows[0]) // 4 for rows in assigned], dtype=np.int64)
