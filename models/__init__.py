"""PyTorch networks: the pretrained backbone and the anomaly model. Nothing about files."""
