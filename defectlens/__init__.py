"""defectlens: AI visual quality inspection for factory lines.

The top-level package holds the contracts every part shares (model card, prediction,
inspection result), the settings, the error family and the command line.
"""

__version__ = "0.1.0"
