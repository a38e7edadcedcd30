"""Atomic writes of files and folders: a reader sees the old output or the new one, never
a mix, and no temporary file is left visible after a failure or a kill.

Files are written to a hidden temporary sibling (``.NAME.XXXX.tmp``) and renamed over the
target with :func:`os.replace` (atomic on POSIX within one file system). Folders are built
in a hidden temporary sibling and swapped in with two renames; the old folder is deleted
only after the new one is in place. A process killed mid-write can leave a hidden
``.NAME.*.tmp`` sibling behind; :func:`clean_stale_temporaries` removes those.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_write_with", "atomic_dir", "clean_stale_temporaries", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The caller writes the whole file to the yielded path (any writer that takes a path:
    ``cv2.imwrite``, ``torch.onnx.export``, ``np.save``...). On an exception the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=TMP_SUFFIX,
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {path}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_with(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary temporary file, then rename it over ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (no NaN/inf) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; swap it in for ``path`` on success.

    Args:
        path: the output folder.
        overwrite: replace an existing folder at ``path``. Without it an existing,
            non-empty folder is refused before any work starts.

    Raises:
        FileExistsError: ``path`` exists, is not empty and ``overwrite`` is false, or is a
            file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output folder {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {path} already exists and is not empty "
                              "(choose another folder or overwrite it explicitly)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=TMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".old" + TMP_SUFFIX,
                                        dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove hidden temporary siblings of ``path`` left by a killed writer.

    Returns:
        The removed paths.
    """
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.glob(_tmp_prefix(path) + "*" + TMP_SUFFIX):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed
