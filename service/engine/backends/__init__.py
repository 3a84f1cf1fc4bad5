"""Stage backends. Importing this package loads none of them (nor torch)."""

BACKENDS = ("torch", "onnx", "tensorrt")
