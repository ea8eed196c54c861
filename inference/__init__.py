"""Serving from ONNX files alone: the engine and everything after it. Never imports torch."""
