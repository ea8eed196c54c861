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


class NotFound(InputError):
    """A station, result, model version or image that does not exist (HTTP 404)."""


class Conflict(InputError):
    """A valid request the current state does not allow, e.g. nothing to roll back (409)."""


class TooLarge(InputError):
    """An upload over the byte limit or an image over the pixel limit (413)."""


class UnsupportedFormat(InputError):
    """A body or image in a format defectlens does not accept (415)."""


class Unavailable(DefectLensError):
    """The service cannot take the request now but will later: too many parts waiting, or a
    model that failed to load (503). `retry_after_s` is the advice given to the caller."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageFull(DefectLensError):
    """The disk that holds images or the database is full or not writable (507); nothing
    was stored."""


class InspectionTimeout(DefectLensError):
    """An inspection ran past the request timeout (504); nothing was stored."""
