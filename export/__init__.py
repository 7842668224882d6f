"""Export stage: quantized, pruned and distilled variants × ONNX / OpenVINO / TensorRT, per target.

Empty until the export issue lands; see DESIGN.md §5 for the manifest it will write.
"""
