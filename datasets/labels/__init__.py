"""Labels: what a label is (`model.py`), and the formats they come and go in: COCO, YOLO,
Pascal VOC, mask folders and DeepPCB's layout (one module each)."""
