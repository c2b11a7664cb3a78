"""Atomic files and folders, and the user cache folder.

Everything eightfold writes goes through these helpers: a file or folder is written under a
temporary name beside its destination and renamed into place, so a reader sees either the old
content or the complete new one, never a partial write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_MARKER",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "check_distinct",
    "check_output_dir",
    "read_jsonl",
    "read_user_text",
    "settings_key",
]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"cannot write file {str(target)!r}: a folder of that name exists; pass a file path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# Every folder written by atomic_dir carries this file, holding the kind of folder it is ("model",
# "index", ...), so that replacing a folder never deletes one that eightfold did not write (a
# mistyped --out pointing at a home folder, say) nor one of another kind (a trained model named as
# the output of an index build). An empty marker comes from a version that recorded no kind.
OUTPUT_MARKER = ".eightfold-output"


def _written_kind(folder: Path) -> str | None:
    """The kind recorded in ``folder``'s marker ("" for an unrecorded kind), or None."""
    marker = folder / OUTPUT_MARKER
    if not marker.is_file():
        return None
    try:
        return marker.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def check_output_dir(
    path: str | os.PathLike[str], *, kind: str = "", overwrite: bool = True
) -> Path:
    """Check, before any work, that ``path`` can receive an output folder of ``kind``.

    A path that does not exist, an empty folder, and a folder that eightfold wrote as the same
    kind are accepted. Returns the absolute path.

    Raises
    ------
    NotADirectoryError
        If ``path`` exists and is a file.
    FileExistsError
        If ``path`` exists and ``overwrite`` is false, or it is a non-empty folder that eightfold
        did not write, or wrote as another kind.
    """
    # abspath, not resolve: '.' and '..' get a real name, a symlinked target stays a symlink.
    target = Path(os.path.abspath(os.fspath(Path(path).expanduser())))
    if not target.exists():
        return target
    if not target.is_dir():
        raise NotADirectoryError(
            f"output path {str(path)!r} is a file; expected a folder (or a path that does not "
            "exist yet). Pass another path or remove the file."
        )
    if not overwrite:
        raise FileExistsError(
            f"output folder {str(path)!r} already exists; remove it or choose another path"
        )
    if not any(target.iterdir()):
        return target
    written = _written_kind(target)
    if written is None:
        raise FileExistsError(
            f"output folder {str(path)!r} already exists, is not empty and was not written by "
            "eightfold, so it is not replaced; choose a new folder name (it is created) or "
            "empty that folder first"
        )
    if written and kind and written != kind:
        raise FileExistsError(
            f"output folder {str(path)!r} holds an eightfold {written}, not "
            f"{_article(kind)} {kind}, so it is not replaced; choose a new folder name or remove "
            "that folder first"
        )
    return target


def check_distinct(out: str | os.PathLike[str], **inputs: str | os.PathLike[str] | None) -> None:
    """Refuse an output path that is one of the inputs, or lies inside or around one.

    ``inputs`` maps a parameter name to a local path (None and hub ids are ignored), so that
    the message can say which input the output would overwrite.
    """
    target = Path(os.path.abspath(os.fspath(Path(out).expanduser())))
    for name, value in inputs.items():
        if value is None:
            continue
        source = Path(os.path.abspath(os.fspath(Path(value).expanduser())))
        if not source.exists():
            continue
        if target == source or source in target.parents or target in source.parents:
            raise ValueError(
                f"the output {str(out)!r} overlaps the input {name} {str(value)!r}; writing it "
                "would destroy the input. Choose an output path outside the input."
            )


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, overwrite: bool = True, kind: str = ""
) -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``path`` when the block succeeds.

    If the block raises, the temporary folder is removed and ``path`` is left as it was. With
    ``overwrite=True`` an existing folder at ``path`` is replaced if it is empty or was itself
    written by this function as the same ``kind`` (its ``.eightfold-output`` file records the
    kind); the old one is moved aside first and deleted only after the new one is in place.

    Raises
    ------
    NotADirectoryError
        If ``path`` exists and is a file.
    FileExistsError
        If ``path`` exists and ``overwrite`` is false, or it is a non-empty folder that eightfold
        did not write, or wrote as another kind (see :func:`check_output_dir`).
    """
    target = check_output_dir(path, kind=kind, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (tmp / OUTPUT_MARKER).write_text(kind, encoding="utf-8")
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_user_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """Read a text file the user named, with errors that name it and say how to fix them.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a folder.
    ValueError
        If the file is not UTF-8 (the message gives the line).
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if file.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder; expected a text file")
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{what} {str(path)!r} is not valid UTF-8 (line {line}, byte {exc.start}: "
            f"{exc.reason}); convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from exc


def read_jsonl(
    path: str | os.PathLike[str], what: str = "file"
) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSON Lines file, each with its line number; blank lines skipped.

    Raises
    ------
    ValueError
        Naming ``path:line`` for a line that is not JSON or not an object, and the line of any
        byte that is not UTF-8.
    """
    rows = []
    for number, line in enumerate(read_user_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}"
            )
        rows.append((number, row))
    return rows


def cache_dir(*parts: str) -> Path:
    """The eightfold cache folder (``$EIGHTFOLD_CACHE``, else ``$XDG_CACHE_HOME/eightfold``)."""
    root = os.environ.get("EIGHTFOLD_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "eightfold"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_key(settings: dict[str, Any], length: int = 12) -> str:
    """A short stable hash of a JSON-serialisable settings dict, for cache keys."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]
