"""Atomic writes: a file or a whole directory appears complete or not at all.

Everything is written under a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a crash (or ``kill -9``) mid-write leaves the
previous version, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    return str(o)


def atomic_write_json(path: str | Path, obj: Any, sort_keys: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists() or target.is_symlink():  # moved aside, deleted once the new one is in
        old = target.parent / f".{target.name}.old.{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def prepare_output_dir(path: str | Path, *, overwrite: bool = False, resume: bool | None = False,
                       owned: tuple[str, ...] | None = None) -> Path:
    """The one rule for every command that writes a run: an existing, non-empty output
    directory is refused unless ``--overwrite=true`` (it is replaced) or ``--resume=true``
    (it is continued; None: the command cannot resume). With ``owned`` (the names a run
    writes), overwriting deletes only those and keeps whatever else the user put there."""
    path = Path(path)
    if overwrite and resume:
        raise ValueError("--overwrite=true and --resume=true exclude each other")
    # a run that stopped before writing anything but its config.json holds no results
    if path.is_dir() and any(p.name != "config.json" for p in path.iterdir()):
        if overwrite and owned is not None:
            for name in owned:
                target = path / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        elif overwrite:
            aside = path.parent / f".{path.name}.old.{os.getpid()}"
            os.replace(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        elif not resume:
            raise FileExistsError(
                f"--output_dir={path} already holds results; pass --overwrite=true to replace them"
                + (" or --resume=true to continue" if resume is not None else "")
            )
    elif path.exists() and not path.is_dir():
        raise FileExistsError(f"--output_dir={path} is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path
