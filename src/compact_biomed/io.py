"""Small I/O helpers shared by every stage: one-line input errors and all-or-nothing outputs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


class InputError(Exception):
    """Bad input: the message is one line that names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


# Marks a folder as one step's output (the file holds the step's name, the same as its CLI command's): only such
# a folder is ever replaced.
OUTPUT_MARKER = ".compact-biomed-output"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False, step: str | None = None):
    """Yield a temporary sibling path; move it to `final` only if the block succeeds.

    A killed or failing job therefore never leaves a half-written output that looks complete. A folder output
    names its `step` in a marker file, and only an empty folder or one carrying that step's marker is replaced:
    nothing we did not write is ever deleted (see `check_replaceable`).
    """
    final = Path(os.path.abspath(final))  # "." and ".." have neither a name nor a parent of their own
    if is_dir and not step:
        raise ValueError("a folder output needs the step that writes it (its marker)")
    check_replaceable(final, step if is_dir else None)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp if is_dir else tmp / final.name
    try:
        yield target
        if is_dir:
            (target / OUTPUT_MARKER).write_text(step + "\n")
        check_replaceable(final, step if is_dir else None)  # again: the block may have run for hours
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_replaceable(final: str | os.PathLike, step: str | None = None) -> None:
    """Refuse an output path whose present content we may not replace.

    A file output (step None) may replace a file but never a folder. A folder output of `step` may replace a
    missing or empty folder, or a previous output of the same step (its marker file names the step).
    """
    final = Path(os.path.abspath(final))
    if not final.exists() and not final.is_symlink():
        return
    if step is None:
        if final.is_dir():
            raise InputError(final, "is a folder; expected a file path (nothing was changed)")
        return
    if not final.is_dir() or final.is_symlink():
        raise InputError(final, "exists and is not a folder (nothing was changed)")
    if output_step(final) == step or not any(final.iterdir()):
        return
    raise InputError(
        final,
        f"is a non-empty folder that '{step}' did not write (no {OUTPUT_MARKER} naming it); "
        f"give a new or empty folder (nothing was changed)",
    )


def output_step(folder: str | os.PathLike) -> str | None:
    """The step named by a folder's output marker, or None."""
    marker = Path(folder) / OUTPUT_MARKER
    try:
        return marker.read_text().strip() if marker.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON atomically (indented, keys sorted so reruns give identical bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def file_digest(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def folder_digest(folder: str | os.PathLike, patterns) -> str:
    """sha256 over the names and contents of a folder's top-level files matching `patterns`."""
    files = sorted({path for pattern in patterns for path in Path(folder).glob(pattern) if path.is_file()})
    if not files:
        raise InputError(folder, "no model or data files found")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()
