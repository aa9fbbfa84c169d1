"""Small helpers shared across nmsat."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed
    over ``path``; on any error the temporary file is removed and ``path`` is untouched.
    """
    atomic_write_many([(path, data)])


def atomic_write_many(files: list[tuple[str | Path, bytes]]) -> None:
    """Write several files all or nothing: every file is first staged completely as a
    temporary file beside its target, and only then are they renamed into place. If any
    staging fails, every temporary file is removed and no target is touched."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            staged.append((_stage(Path(path), data), Path(path)))
        for tmp, p in staged:
            os.replace(tmp, p)
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


def _stage(p: Path, data: bytes) -> str:
    """A flushed temporary copy of ``data`` in ``p``'s folder with ``p``'s future mode."""
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:  # name the file asked for, not the temporary one
        why = (f"{p.parent} is not a folder" if p.parent.exists() and not p.parent.is_dir()
               else e.strerror or str(e))
        raise OutputError(f"cannot write {p}: {why}") from None
    try:  # keep an existing file's permissions; a new file gets the usual 0o666 & ~umask
        mode = p.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0o600, which would otherwise replace ``path``
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Like :func:`atomic_write_bytes`, for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
