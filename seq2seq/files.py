"""Writing files so that a crash never leaves a half-written one under the real name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` when the block succeeds.

    Missing parent folders are created, and removed again if the block fails.
    On an error (or a kill) the real name keeps its old content, or stays
    absent; the temporary file is removed on errors and is named
    `.NAME.tmpPID` so that a later run can recognise a stale one.
    """
    path = Path(path).absolute()
    created = [p for p in path.parents if not p.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in created:  # a failed write leaves no new empty folders either
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the `.NAME.tmpPID` files that killed writers left in `folder`."""
    stale = [p for p in folder.glob(".*.tmp*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
