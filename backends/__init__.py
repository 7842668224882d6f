"""One inference interface over onnxruntime, OpenVINO, TensorRT, torch and a numpy reference
(docs/contracts.md#backends).

Each runtime is imported lazily inside its own module; this package never imports torch.
"""
