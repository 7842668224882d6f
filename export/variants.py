"""The variant table, defined once: each exported variant is a torch-level source × an ONNX-level precision.

Sources (``export.sources.source_builder``) say which network is exported: the float policy, a
structurally pruned or masked copy of it, or the distilled student. Precisions
(``export.quantize.PRECISIONS``) say what happens to its ONNX graph afterwards. Names are what target
profiles, the manifest, ``--variants`` and ``edge_runtime --variant`` use; nothing else keeps a list of
them (the compression search adds one more to a manifest: ``searched``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    source: str
    """Key of ``export.sources.SOURCES``: the torch network this variant is made from."""
    precision: str
    """Key of ``export.quantize.PRECISIONS``: the graph transform applied to its fp32 ONNX."""
    options: tuple[tuple[str, Any], ...] = ()
    """Settings of that transform other than its defaults, as (name, value) pairs: ``per_channel`` and
    ``equalize`` (the int8 precisions' keyword arguments) and ``calibration`` (how many of the calibration
    states it sees). The fixed variants below keep the defaults; the compression search
    (``export.search``) varies them."""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("float", "float", "fp32"),
        Variant("fp16", "float", "fp16"),
        Variant("int8-dynamic", "float", "int8-dynamic"),
        Variant("int8-static", "float", "int8-static"),
        Variant("pruned-30", "pruned-30", "fp32"),
        Variant("pruned-50", "pruned-50", "fp32"),
        Variant("pruned-70", "pruned-70", "fp32"),
        Variant("masked-50", "masked-50", "fp32"),
        Variant("distilled", "distilled", "fp32"),
        Variant("distilled-int8", "distilled", "int8-static"),
        Variant("pruned-50-int8", "pruned-50", "int8-static"),
        Variant("binary", "binary", "fp32"),
    )
}


def get_variant(name: str) -> Variant:
    """The variant called ``name``; an unknown name lists the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}") from None
