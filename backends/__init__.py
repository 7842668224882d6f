"""One inference interface over onnxruntime, OpenVINO, TensorRT, torch and a numpy reference (DESIGN.md §6).

Each runtime is imported lazily inside its own module; this package never imports torch.
"""
