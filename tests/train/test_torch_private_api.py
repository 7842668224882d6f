"""The two torch internals the trainer's fast path relies on are still there, and say so loudly if not.

A torch upgrade can drop either without a deprecation cycle:
- MKL's Fortran ``sgemm_``, which ``train/fused_cql.py`` looks up in ``libtorch_cpu.so`` (``_find_sgemm``).
  Without it CQL quietly falls back to ``train/mlp_grad.py``, ~1.3× slower, and the fused tests in
  ``tests/train/test_mlp_grad.py`` skip, so nothing would fail; this file fails on the platform where the
  fused path is expected (x86-64 Linux).
- ``torch._fused_adam_``, which ``LeanAdam`` (``train/optim.py``) calls with keyword arguments. A removal or
  a signature change breaks every training run. ``tests/train/test_optim.py`` already checks LeanAdam
  against ``torch.optim.Adam(fused=True)`` bit for bit over 30 steps; as that reference runs the same
  kernel, this file checks one step against the non-fused Adam and turns a failure into a message that
  names the cause and the fix.

Whether the fused step computes the right gradient is ``tests/train/test_mlp_grad.py``'s job, not this file's.
"""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from train import fused_cql
from train.optim import LeanAdam

#: Where torch's wheels link MKL statically into libtorch_cpu.so (elsewhere the fallback is intended).
MKL_PLATFORM = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


@pytest.mark.skipif(not MKL_PLATFORM, reason="torch links no MKL here: CQL uses train/mlp_grad.py by design")
def test_mkl_sgemm_is_found_in_libtorch_cpu() -> None:
    why = (
        f"torch {torch.__version__} no longer exports MKL's sgemm_ from lib/libtorch_cpu.so "
        "(train/fused_cql.py:_find_sgemm found none), so CQL silently falls back to train/mlp_grad.py "
        "(~1.3x slower): find the symbol's new home (another torch library, or a BLAS of its own) and "
        "update _find_sgemm, or pin torch to the last version that has it"
    )
    assert fused_cql._find_sgemm() is not None, why
    assert fused_cql.available(), (
        f"torch {torch.__version__}: sgemm_ is in libtorch_cpu.so but its product disagrees with torch.mm "
        "(train/fused_cql.py:available), so CQL falls back to train/mlp_grad.py: check the symbol's calling "
        "convention (LP64/ILP64 integers, Fortran by-pointer arguments) in _find_sgemm and gemm"
    )


def test_fused_adam_kernel_exists_and_steps_like_adam() -> None:
    fix = (
        "LeanAdam (train/optim.py) calls torch._fused_adam_ directly: port LeanAdam.step to the kernel's new "
        "name or signature (see torch/optim/adam.py:_fused_adam), or pin torch to a version that has it"
    )
    kernel = getattr(torch, "_fused_adam_", None)
    assert callable(kernel), f"torch {torch.__version__} removed torch._fused_adam_; {fix}"

    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=generator), torch.randn(3, generator=generator)]
    grads = [torch.randn(5, 3, generator=generator), torch.randn(3, generator=generator)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    for p, q, g in zip(ours, theirs, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    lean = LeanAdam(ours, lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    try:
        lean.step()  # the kernel called exactly as training calls it
    except (TypeError, RuntimeError) as err:
        pytest.fail(
            f"torch {torch.__version__}: torch._fused_adam_ no longer takes LeanAdam's call ({err}); {fix}"
        )
    reference = torch.optim.Adam(theirs, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, fused=False, foreach=False)
    reference.step()
    for p, q, s in zip(ours, theirs, start, strict=True):
        assert not torch.equal(p.detach(), s), f"torch._fused_adam_ left the parameters unchanged; {fix}"
        torch.testing.assert_close(
            p.detach(),
            q.detach(),
            rtol=1e-6,
            atol=1e-7,
            msg=lambda m: f"torch._fused_adam_ no longer computes Adam's step ({m}); {fix}",
        )
    assert [float(s) for s in lean.steps] == [1.0, 1.0]
    for exp_avg, g in zip(lean.exp_avg, grads, strict=True):  # the state the kernel updates in place
        torch.testing.assert_close(
            exp_avg, 0.2 * g, msg=lambda m: f"exp_avg is not (1 - beta1)·grad ({m}); {fix}"
        )
