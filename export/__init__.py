"""Export stage: quantized, pruned and distilled variants × ONNX / OpenVINO / TensorRT, per target.

``python -m export --target x86`` (``export.pipeline``) turns a checkpoint into every variant × format the
target profile lists, gates each artifact against the float policy with its own runtime, and records
them all in ``artifacts/<target>/manifest.json`` (docs/contracts.md#the-manifest). The variant table is
``export.variants``; torch-level sources are ``export.sources`` (pruning in ``export.prune``), ONNX precisions
``export.quantize``, output formats ``export.formats.<name>``, gates ``export.gates``.
"""
