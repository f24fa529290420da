"""Export: torch -> ONNX -> TensorRT, the bundle writer, parity checks. May import train, sdk."""
