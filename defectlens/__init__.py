"""defectlens: AI visual quality inspection for factory lines.

The top-level package holds the contracts every part shares (model card, prediction,
inspection result), the settings, the error family and the command line.
"""

import os

__version__ = "0.1.0"

DECODE_PIXEL_CAP = 2**28
"""The most pixels decoded in one image, whatever limit a caller asks for: 268 million, e.g.
16384×16384 (1 GiB as 8-bit RGBA). `datasets.images` checks every header against it before
decoding."""

# OpenCV's own pixel cap is a second guard, should a decoder ever be reached with a size the
# header check did not see. OpenCV reads the variable once, when cv2 is first imported (a
# value set later is ignored), so it is set here, before any module of the package imports
# cv2 (a program that imports cv2 itself before defectlens runs with OpenCV's default cap,
# behind the header check alone). setdefault: a plant that sets it itself keeps its value.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DECODE_PIXEL_CAP))
