"""The exceptions lotcontrol raises for things a user can fix.

One root, a base per area, and leaves that also inherit a builtin. The CLI turns every
:class:`LotControlError` into ``Error: <message>`` and exit code 1; anything else is a bug.
"""


class LotControlError(Exception):
    """Base class for every error a user can act on.

    The message is English, as the command line prints it. ``code`` (optional) names the sentence
    for good and ``params`` holds its values, so that a reader in another language says it without
    parsing the English: the web console's catalogue has a message per code (web/said.py, ``ERRORS``;
    tests/test_web_residents.py fails on a code raised in the package that it lacks).
    """

    def __init__(self, *args: object, code: str | None = None, **params: object) -> None:
        super().__init__(*args)
        self.code = code
        self.params = params


class ConfigError(LotControlError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class DataDirError(LotControlError, OSError):
    """The data directory cannot be created or is not private."""


class StoreError(LotControlError):
    """Base class for errors about what is on file."""


class DatabaseLocked(StoreError):
    """Another process held the database locked for longer than the busy timeout."""


class ResidentNotFound(StoreError, LookupError):
    """No resident has that name."""


class ResidentExists(StoreError, ValueError):
    """A resident with that name is already on file."""


class InvalidName(StoreError, ValueError):
    """A resident's name is empty, too long or holds characters a name cannot have."""


class InvalidValue(StoreError, ValueError):
    """A resident's field (unit, phone, dates, status) has a value it cannot have."""


class PhotoError(LotControlError, ValueError):
    """A photo cannot be used: unreadable, no face, several faces, too small or too blurry."""


def too_large(name: str, size: int | None, max_mb: float) -> str:
    """A photo file's refusal past ``enroll.max_file_mb`` (the command line's and the web console's
    upload's); ``size`` None: the file grew past the limit as it was read."""
    what = "larger" if size is None else f"{size / 1e6:,.0f} MB" if size >= 1e7 else f"{size / 1e6:.3g} MB"
    return f"{name}: the file is {what}, more than enroll.max_file_mb = {max_mb:g} allows"


class ModelFileError(LotControlError, RuntimeError):
    """A face model file is missing or differs from the one that was measured."""


class ModelConvertError(ModelFileError, ValueError):
    """A tfjs graph model cannot be converted to ONNX: an op, a layout or a weight encoding the
    converter does not know, or weights that do not match their manifest."""


class CaptureError(LotControlError, RuntimeError):
    """Enrollment at the camera was refused: the face changed person, two faces were in view, the
    camera is the running controller's, or too few good frames came."""


class EventNotUsable(StoreError, LookupError):
    """An event cannot give a face: unknown ID, not a refused passage, or no snapshot."""
