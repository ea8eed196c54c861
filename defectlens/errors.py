"""The one exception family. Messages say what is wrong, where, and what to do.

The CLI turns `InputError` into exit status 2 and the API into a 4xx; everything else is a
bug or an environment fault (exit 1, 5xx).
"""


class DefectLensError(Exception):
    """Base of every error defectlens raises on purpose."""


class InputError(DefectLensError):
    """The caller gave something unusable: a bad file, field, option or image."""


class DataError(InputError):
    """A data set, image or mask on disk cannot be used (names the file)."""


class RecipeError(InputError):
    """A training recipe or station config is invalid (names the field)."""


class ModelError(InputError):
    """A model version folder is incomplete, altered or of an unknown format."""
