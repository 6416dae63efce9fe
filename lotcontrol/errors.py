"""The exceptions lotcontrol raises for things a user can fix.

One root, a base per area, and leaves that also inherit a builtin. The CLI turns every
:class:`LotControlError` into ``Error: <message>`` and exit code 1; anything else is a bug.
"""

from .phrases import Phrase


class LotControlError(Exception):
    """Base class for every error a user can act on.

    The message is English, as the command line prints it. ``code`` (optional) names the sentence
    for good and ``params`` holds its values, so that a reader in another language says it without
    parsing the English: lotcontrol/phrases.py has the page's sentence of each code, which the web
    console's catalogue translates (web/said.py; tests/test_web_residents.py fails on a code raised in
    the package that ``PHRASES`` lacks).
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


class ManagedByHub(LotControlError, ValueError):
    """A lot's copy of one of the hub's residents: staff change them on the hub."""


class PhotoError(LotControlError, ValueError):
    """A photo cannot be used: unreadable, no face, several faces, too small or too blurry."""


def too_large_reason(size: int | None, max_mb: float) -> Phrase:
    """Why a photo file is refused past ``enroll.max_file_mb`` (the command line's and the web console's
    upload's); ``size`` None: the file grew past the limit as it was read."""
    if size is None:
        return Phrase("photo.grew", limit=f"{max_mb:g}")
    return Phrase("photo.too_large", size=f"{size / 1e6:,.0f}" if size >= 1e7 else f"{size / 1e6:.3g}", limit=f"{max_mb:g}")


def too_large(name: str, size: int | None, max_mb: float) -> Phrase:
    """``NAME: the file is ... MB, more than enroll.max_file_mb = ... allows``."""
    return Phrase("photo.named", path=name, reason=too_large_reason(size, max_mb))


def photo_refused(name: str, reason: Phrase) -> "PhotoError":
    """A photo refused, naming it: ``NAME: REASON``, with the code ``photo.named`` and the reason's own
    code inside (the web console says both in its language)."""
    return PhotoError(Phrase("photo.named", path=name, reason=reason), code="photo.named", path=name, reason=reason)


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
