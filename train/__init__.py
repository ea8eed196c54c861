"""Training: fitting, metrics, threshold calibration, ONNX export, reports."""
