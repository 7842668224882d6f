"""Test helper: prove that loading a file unpickled nothing, by making every pickle entry point raise."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest


class Unpickled(AssertionError):
    """Raised by every pickle entry point inside :func:`forbid_unpickling`."""


@contextlib.contextmanager
def forbid_unpickling() -> Iterator[None]:
    """Every pickle entry point an SB3 zip could be read through raises :class:`Unpickled`, so a load that
    completes inside this block used none of them."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unpickled("unpickling attempted")

    with pytest.MonkeyPatch.context() as mp:
        for module, name in (
            (pickle, "loads"),
            (pickle, "load"),
            (pickle, "Unpickler"),
            (cloudpickle, "loads"),
        ):
            mp.setattr(module, name, refuse)
        yield
