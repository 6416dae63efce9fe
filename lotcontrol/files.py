"""Files written whole or not at all: the safety state, the converted face models.

``write_atomic`` writes to a temporary file beside the target, fsyncs it, renames it over the target
and fsyncs the folder: after a crash or a power cut the target holds the old bytes or the new ones,
never a part, and the new ones are on the disk when it returns.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` durably, whole or not at all (OSError if it cannot be written; the
    temporary file is then removed and the old file left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)  # a leftover from an earlier crash keeps its own mode otherwise
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
