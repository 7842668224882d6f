"""CQL's whole gradient step for an MLP as one compiled call: forward, loss head and backward.

Why it exists: :mod:`train.mlp_grad` already skips autograd, but each of its ~40 torch calls per step
(views, transposes, bias copies, ReLU, sums, their Python bindings and dispatch) runs on the main thread
while the second core waits. ``perf`` on the 256×256 step found the main thread outside the matrix products
56 % of the time, and the second thread idle 47 %. Here one numba-compiled function does the whole step, and
the matrix products go straight to the BLAS that PyTorch itself uses: Intel MKL, whose Fortran ``sgemm_``
the x86-64 Linux wheels of torch export from ``libtorch_cpu.so``. That is the same multithreaded kernel
``torch.mm`` reaches, without the layers around it. ReLU, bias sums and the loss head
(:func:`train.loss_head._head`) are loops in the same compiled function. Timed against the torch path in
interleaved 1,000-step blocks of one process, the batch-256 step on the 256×256 net ran 1.28× faster
(median; 1.06–1.30 per block) and the default 128×128×128 net on one thread 1.35×.

An MLP built with ``layer_norm`` (the trainer's default) has a LayerNorm between each hidden Linear and its
ReLU; the step runs it and its backward as row loops too, about a fifth of the step on the default net.

Where torch has no MKL (arm64, macOS) or the library fails the check below, :func:`available` is false
and CQL uses :mod:`train.mlp_grad` (autograd for a LayerNorm net). ``tests/train/test_mlp_grad.py``
compares both paths with autograd.

Parameters are read and gradients written in place through numpy views, so the caller must not replace
a parameter's storage (``load_state_dict`` and the optimizer update in place). The gradient tensors are
reused from step to step: a ``.grad`` read after the next step holds that step's gradient.
"""

from __future__ import annotations

import ctypes
import functools
import os

import numba
import numpy as np
import torch
from torch import nn

from train import mlp_grad
from train.loss_head import _head
from train.networks import MLPNet

#: BLAS "transpose" flags (Fortran characters).
_N, _T = ord("N"), ord("T")


def _find_sgemm() -> ctypes._CFuncPtr | None:
    """MKL's Fortran ``sgemm_`` from the torch library loaded in this process, or ``None``."""
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        symbol = ctypes.CDLL(path).sgemm_
    except (OSError, AttributeError):
        return None
    address = ctypes.cast(symbol, ctypes.c_void_p).value
    # Fortran calling convention: every argument by pointer. The integers sit in 64-bit slots
    # (_scratch), which an LP64 library (32-bit integers, torch's MKL) and an ILP64 one read alike.
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(address)


_sgemm = _find_sgemm()

# Not cached on disk: the compiled code holds sgemm_'s address in this process. Each process compiles
# on first use: ~1.2 s for the check in available(), ~2.5 s for the step (256×256 net, measured here).
# No bounds checks here (they would keep the loops from vectorizing): every array is one of
# FusedCQLStep's own buffers, sized together, and __call__ checks the batch's shapes against them. The
# data-dependent indices (actions, table rows) are read by train.loss_head._head, which checks them.
_jit = numba.njit(nogil=True, error_model="numpy")
#: For the LayerNorm loops: their row sums vectorise only if the compiler may reorder the additions. Full
#: fast-math (it also assumes no NaN or inf: a run that diverges gives garbage either way) is what the
#: first row of the seed table in docs/training.md was measured with; the training outcome depends on the
#: float order, and reassociation alone (``fastmath={"reassoc", "contract"}``) left seed 0 at 0.986
#: instead of 0.999.
_jit_reduce = numba.njit(nogil=True, error_model="numpy", fastmath=True)


@_jit
def gemm(trans_a, trans_b, m, n, k, a, b, beta, c, ints, floats, chars):
    """``C[:m, :n] = op(A)·op(B) + beta·C`` for C-contiguous float32 arrays (``op`` transposes for ``_T``).

    BLAS is column-major, and a row-major array is its transpose there, so this asks for
    ``Cᵀ = op(B)ᵀ·op(A)ᵀ``: the operands swap places and keep their flags. ``ints``, ``floats`` and
    ``chars`` are scratch arrays that carry the by-pointer scalar arguments.
    """
    chars[0] = trans_b
    chars[1] = trans_a
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = b.shape[1]  # leading dimensions: the row lengths
    ints[4] = a.shape[1]
    ints[5] = c.shape[1]
    floats[0] = 1.0
    floats[1] = beta
    _sgemm(
        chars[0:].ctypes.data,
        chars[1:].ctypes.data,
        ints[0:].ctypes.data,
        ints[1:].ctypes.data,
        ints[2:].ctypes.data,
        floats[0:].ctypes.data,
        b.ctypes.data,
        ints[3:].ctypes.data,
        a.ctypes.data,
        ints[4:].ctypes.data,
        floats[1:].ctypes.data,
        c.ctypes.data,
        ints[5:].ctypes.data,
    )


@_jit
def _step(
    x,
    weights,
    biases,
    acts,
    grad_w,
    grad_b,
    grad_h,
    grad_q,
    actions,
    rewards,
    not_done,
    table,
    rows,
    gamma,
    w,
    norm,
    gains,
    shifts,
    xhat,
    rstd,
    grad_gain,
    grad_shift,
    eps,
    ints,
    floats,
    chars,
):
    """Forward over ``x = [obs; next_obs]``, CQL's loss head, backward over the ``obs`` rows.

    Writes every layer's output into ``acts`` (ReLU applied, the last one is Q), ``∂L/∂W`` and ``∂L/∂b``
    into ``grad_w``/``grad_b`` (``grad_h`` and ``grad_q`` are scratch), and returns (Bellman loss,
    conservative gap). Same arithmetic as :func:`train.mlp_grad.forward`, :func:`train.loss_head.cql_head`
    and :func:`train.mlp_grad.backward`.

    With ``norm``, each hidden layer is Linear → LayerNorm(``gains``, ``shifts``, ``eps``) → ReLU: the
    forward keeps each row's normalised values and 1/σ (``xhat``, ``rstd``) for the backward, which writes
    the LayerNorm gradients into ``grad_gain``/``grad_shift``. Without it those tuples are not read.
    """
    rows2 = x.shape[0]
    n = rows2 // 2
    n_layers = len(weights)
    inp = x
    for i in range(n_layers):
        weight, bias, out = weights[i], biases[i], acts[i]
        width, fan_in = weight.shape
        gemm(_N, _T, rows2, width, fan_in, inp, weight, 0.0, out, ints, floats, chars)
        if i == n_layers - 1:
            for r in range(rows2):
                for j in range(width):
                    out[r, j] += bias[j]
        elif norm:
            _layer_norm_forward(out, bias, gains[i], shifts[i], eps, xhat[i], rstd[i])
        else:
            for r in range(rows2):
                for j in range(width):
                    out[r, j] = max(out[r, j] + bias[j], 0.0)
        inp = out
    bellman, gap = _head(acts[n_layers - 1], actions, rewards, not_done, table, rows, gamma, w, grad_q)
    g = grad_q
    for i in range(n_layers - 1, -1, -1):
        weight = weights[i]
        width, fan_in = weight.shape
        below = x if i == 0 else acts[i - 1]  # this layer's input; its first n rows are the obs rows
        gemm(_T, _N, width, fan_in, n, g, below, 0.0, grad_w[i], ints, floats, chars)
        gb = grad_b[i]
        gb[:] = 0.0
        for r in range(n):
            for j in range(width):
                gb[j] += g[r, j]
        if i > 0:
            g_below = grad_h[i - 1]
            gemm(_N, _N, n, fan_in, width, g, weight, 0.0, g_below, ints, floats, chars)
            for r in range(n):  # ReLU'(h) = 1 where the layer's output is positive
                for j in range(fan_in):
                    if below[r, j] <= 0.0:
                        g_below[r, j] = 0.0
            if norm:
                _layer_norm_backward(
                    g_below, gains[i - 1], xhat[i - 1], rstd[i - 1], grad_gain[i - 1], grad_shift[i - 1]
                )
            g = g_below
    return bellman, gap


@_jit_reduce
def _layer_norm_forward(out, bias, gain, shift, eps, xhat, rstd):
    """``out ← relu(gain·(h − mean h)/sqrt(var h + eps) + shift)`` row by row, with ``h = out + bias``;
    keeps the normalised ``h`` and ``1/sqrt(var h + eps)`` for :func:`_layer_norm_backward`."""
    rows, width = out.shape
    scale = np.float32(1.0 / width)
    for r in range(rows):
        h = out[r]
        total = np.float32(0.0)
        for j in range(width):
            v = h[j] + bias[j]
            h[j] = v
            total += v
        mean = total * scale
        sq = np.float32(0.0)
        for j in range(width):
            d = h[j] - mean
            sq += d * d
        inv = np.float32(1.0) / np.sqrt(sq * scale + np.float32(eps))
        rstd[r] = inv
        normed_row = xhat[r]
        for j in range(width):
            normed = (h[j] - mean) * inv
            normed_row[j] = normed
            h[j] = max(gain[j] * normed + shift[j], np.float32(0.0))


@_jit_reduce
def _layer_norm_backward(g, gain, xhat, rstd, grad_gain, grad_shift):
    """``g``: ∂L/∂(LayerNorm output) over the first ``len(g)`` rows, turned in place into ∂L/∂(its input);
    writes ∂L/∂gain and ∂L/∂shift."""
    rows, width = g.shape
    scale = np.float32(1.0 / width)
    grad_gain[:] = 0.0
    grad_shift[:] = 0.0
    for r in range(rows):
        dy, normed = g[r], xhat[r]
        sum_d = np.float32(0.0)
        sum_dx = np.float32(0.0)
        for j in range(width):
            grad_shift[j] += dy[j]
            grad_gain[j] += dy[j] * normed[j]
            d = dy[j] * gain[j]
            sum_d += d
            sum_dx += d * normed[j]
        mean_d = sum_d * scale
        mean_dx = sum_dx * scale
        inv = rstd[r]
        for j in range(width):
            dy[j] = inv * (dy[j] * gain[j] - mean_d - normed[j] * mean_dx)


@functools.cache
def available() -> bool:
    """Whether torch's MKL ``sgemm_`` is here and multiplies correctly through :func:`gemm` (checked once,
    against ``torch.mm``, for all four transpose combinations)."""
    if _sgemm is None:
        return False
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 7, generator=gen), torch.rand(7, 3, generator=gen)
    scratch = _scratch()
    cases = [(_N, _N, a, b), (_T, _N, a.t().contiguous(), b), (_N, _T, a, b.t().contiguous())]
    cases.append((_T, _T, a.t().contiguous(), b.t().contiguous()))
    for trans_a, trans_b, a_in, b_in in cases:
        out = np.zeros((5, 3), np.float32)
        gemm(trans_a, trans_b, 5, 3, 7, a_in.numpy(), b_in.numpy(), 0.0, out, *scratch)
        if not np.allclose(out, (a @ b).numpy(), rtol=1e-5, atol=1e-6):
            return False
    return True


def _scratch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots for :func:`gemm`'s by-pointer scalars: integers (little-endian int64, see _find_sgemm),
    alpha and beta, the two transpose flags."""
    return np.zeros(8, np.int64), np.zeros(2, np.float32), np.zeros(2, np.uint8)


def mlp_parts(net: nn.Module) -> tuple[list[nn.Linear], list[nn.LayerNorm] | None] | None:
    """The Linear layers of an ``MLPNet`` (Linear → ReLU … → Linear, or Linear → LayerNorm → ReLU … when
    built with ``layer_norm``) and its LayerNorms (``None`` without), or ``None`` for any other network."""
    layers = mlp_grad.mlp_layers(net)
    if layers is not None:
        return layers, None
    if type(net) is not MLPNet:
        return None
    body = list(net.body)
    linears, norms = body[0::3], body[1::3]
    shape_ok = len(body) == 3 * len(linears) and all(isinstance(m, nn.ReLU) for m in body[2::3])
    shape_ok = shape_ok and all(isinstance(m, nn.Linear) for m in linears)
    shape_ok = shape_ok and all(
        isinstance(m, nn.LayerNorm) and m.elementwise_affine and m.bias is not None for m in norms
    )
    if not shape_ok or len({m.eps for m in norms}) != 1:
        return None
    return [*linears, net.out], norms


class FusedCQLStep:
    """The buffers of :func:`_step` for one MLP: layer outputs, gradients and scratch, sized on first use
    (and again when the batch size changes). ``norms``: the LayerNorm after each hidden Linear, if any."""

    def __init__(self, layers: list[nn.Linear], norms: list[nn.LayerNorm] | None = None) -> None:
        self.params = [p for layer in layers for p in (layer.weight, layer.bias)]
        self.weights = tuple(layer.weight.detach().numpy() for layer in layers)
        self.biases = tuple(layer.bias.detach().numpy() for layer in layers)
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.grad_w = tuple(g.numpy() for g in self.grads[0::2])
        self.grad_b = tuple(g.numpy() for g in self.grads[1::2])
        self.norm = bool(norms)
        hidden = len(layers) - 1
        if norms:
            if len(norms) != hidden:
                raise ValueError(f"expected one LayerNorm per hidden layer ({hidden}), got {len(norms)}")
            norm_params = [p for m in norms for p in (m.weight, m.bias)]
            norm_grads = [torch.zeros_like(p) for p in norm_params]
            self.params += norm_params
            self.grads += norm_grads
            self.gains = tuple(m.weight.detach().numpy() for m in norms)
            self.shifts = tuple(m.bias.detach().numpy() for m in norms)
            self.grad_gain = tuple(g.numpy() for g in norm_grads[0::2])
            self.grad_shift = tuple(g.numpy() for g in norm_grads[1::2])
            self.eps = float(norms[0].eps)
        else:  # typed placeholders: _step does not read them
            self.gains = self.shifts = self.grad_gain = self.grad_shift = (np.zeros(0, np.float32),) * hidden
            self.eps = 0.0
        self.scratch = _scratch()
        self.rows = 0

    def _size(self, rows: int) -> None:
        widths = [w.shape[0] for w in self.weights]
        self.acts = tuple(np.empty((2 * rows, width), np.float32) for width in widths)
        self.grad_h = tuple(np.empty((rows, width), np.float32) for width in widths[:-1])
        self.grad_q = np.empty((rows, widths[-1]), np.float32)
        shapes = [(2 * rows, width) if self.norm else (0, 0) for width in widths[:-1]]
        self.xhat = tuple(np.empty(shape, np.float32) for shape in shapes)
        self.rstd = tuple(np.empty(shape[0], np.float32) for shape in shapes)
        self.rows = rows

    def __call__(
        self,
        stacked: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        not_done: torch.Tensor,
        table: torch.Tensor,
        table_rows: torch.Tensor,
        gamma: float,
        w: float,
    ) -> tuple[float, float]:
        """Set every parameter's ``.grad`` for one minibatch; returns (Bellman loss, conservative gap).

        Arguments as in :func:`train.loss_head.cql_head`, with ``stacked`` = ``[obs; next_obs]``.
        """
        n = len(actions)
        fan_in = self.weights[0].shape[1]
        if stacked.shape != (2 * n, fan_in) or table_rows.shape != (n,):
            raise ValueError(
                f"expected {2 * n} stacked observations of {fan_in} values and {n} table rows for {n} actions"
            )
        if n != self.rows:
            self._size(n)
        bellman, gap = _step(
            stacked.contiguous().numpy(),
            self.weights,
            self.biases,
            self.acts,
            self.grad_w,
            self.grad_b,
            self.grad_h,
            self.grad_q,
            actions.numpy(),
            rewards.numpy(),
            not_done.numpy(),
            table.numpy(),
            table_rows.numpy(),
            float(gamma),
            float(w),
            self.norm,
            self.gains,
            self.shifts,
            self.xhat,
            self.rstd,
            self.grad_gain,
            self.grad_shift,
            self.eps,
            *self.scratch,
        )
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g
        return float(bellman), float(gap)
