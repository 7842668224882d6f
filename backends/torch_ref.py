"""The torch reference backend: the float policy exactly as training left it (a ``.safetensors`` checkpoint).

Every other backend's parity is measured against this one. torch is imported inside the methods only,
so importing this module (e.g. through the registry) costs nothing on a device without torch.
Settings: ``threads`` (default 1: fastest for a tiny MLP and fair next to one-thread runtimes),
``compile`` (``torch.compile`` the module; slow first call, sometimes faster afterwards) and
``compile_backend`` (default ``inductor``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, BackendUnavailable

_INSTALL = "torch==2.13.0 (the `train` extra: pip install -c constraints.txt -e '.[train]')"


class TorchBackend(Backend):
    """Loads a NeuroQuant checkpoint through ``train.checkpoint.load_checkpoint`` and runs it eagerly."""

    name: ClassVar[str] = "torch"
    formats: ClassVar[tuple[str, ...]] = ("torch",)
    # the edge path never carries torch (docs/contracts.md#layout-and-dependency-rules)
    on_device: ClassVar[bool] = False
    package: ClassVar[str] = _INSTALL

    @classmethod
    def check_available(cls) -> None:
        try:
            import safetensors  # noqa: F401
            import torch  # noqa: F401
        except ImportError as err:
            raise BackendUnavailable(f"backend 'torch' needs {_INSTALL} and safetensors: {err}") from err

    @classmethod
    def from_checkpoint(cls, path: str | Path, settings: dict[str, Any] | None = None) -> TorchBackend:
        """Load a checkpoint without a manifest (benchmarks, tests); the sizes come from its own config.

        There is no recorded hash to verify here: the caller chose the file.
        """
        cls.check_available()
        from train.checkpoint import read_checkpoint

        config, _, _ = read_checkpoint(path)
        backend = cls(Path(path), config.obs_dim, config.n_actions, settings)
        backend.load()
        return backend

    def load(self) -> None:
        import torch

        from train.checkpoint import load_checkpoint

        model, config, _ = load_checkpoint(self.path)
        if config.obs_dim != self.obs_dim:
            raise ValueError(
                f"{self.path}: network takes observations of size {config.obs_dim}, "
                f"the manifest's env has {self.obs_dim}"
            )
        if config.n_actions != self.n_actions:
            raise ValueError(
                f"{self.path}: network outputs {config.n_actions} values, "
                f"the env has {self.n_actions} actions"
            )
        threads = int(self.settings.get("threads", 1))
        if threads > 0:
            torch.set_num_threads(threads)
        self.config = config
        self._torch = torch
        if self.settings.get("compile", False):
            # ``compile_backend`` defaults to inductor; "eager" only checks the graph capture (fast, tests).
            model = torch.compile(model, backend=str(self.settings.get("compile_backend", "inductor")))
        self.model = model

    def _tensor(self, x: np.ndarray) -> Any:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not x.flags.writeable:  # read-only tables (the env's observations): torch warns on those
            x = x.copy()
        return self._torch.from_numpy(x)

    def infer(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations [N, {self.obs_dim}], got shape {x.shape}")
        with self._torch.inference_mode():
            return self.model(self._tensor(x)).numpy()

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._tensor(np.reshape(obs, (1, -1))))[0].numpy()

    def runtime_version(self) -> str:
        return f"torch {self._torch.__version__}" if hasattr(self, "_torch") else "torch (not loaded)"
