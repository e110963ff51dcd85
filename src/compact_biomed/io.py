"""Small I/O helpers shared by every stage: one-line input errors and all-or-nothing outputs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path


class InputError(Exception):
    """Bad input: the message is one line that names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def first_line(error: BaseException) -> str:
    """The first line of an error's message ("" for none): a library's error as part of a one-line problem."""
    return (str(error).strip().splitlines() or [""])[0]


# Marks a folder as one step's output: the file holds the step's name (the same as its CLI command's), then every
# file the step wrote. Only such a folder is ever replaced, and only while it holds nothing else.
OUTPUT_MARKER = ".compact-biomed-output"
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"  # Snakemake's own, in every directory() output it finished


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False, step: str | None = None):
    """Yield a temporary sibling path; move it to `final` only if the block succeeds.

    A killed or failing job therefore never leaves a half-written output that looks complete. A folder output
    names its `step` and its files in a marker file, and only an empty folder or one holding just that step's
    files is replaced: nothing we did not write is ever deleted (see `check_replaceable`). The folder gets the
    permissions a plain mkdir would (the temporary one is private).
    """
    final = Path(os.path.abspath(final))  # "." and ".." have neither a name nor a parent of their own
    if is_dir and not step:
        raise ValueError("a folder output needs the step that writes it (its marker)")
    check_replaceable(final, step if is_dir else None)
    created = [folder for folder in final.parents if not folder.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp if is_dir else tmp / final.name
    try:
        yield target
        if is_dir:
            (target / OUTPUT_MARKER).write_text("".join(f"{line}\n" for line in [step, *folder_files(target)]))
            # mkdtemp's 0700 made what a plain mkdir would: the umask's mode, with a setgid parent's bit kept
            tmp.chmod(0o777 & ~current_umask() | tmp.stat().st_mode & stat.S_ISGID)
            umask_modes(target)
        check_replaceable(final, step if is_dir else None)  # again: the block may have run for hours
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(target, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first; one that holds something by now stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def umask_modes(folder: Path) -> None:
    """Give every file in `folder` the mode a plain write would (the umask's): a library may write private ones
    (transformers' model.safetensors came out 0600 beside 0644 files), which others sharing the results cannot
    read."""
    umask = current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            executable = path.stat().st_mode & stat.S_IXUSR
            path.chmod((0o777 if executable else 0o666) & ~umask)


def check_replaceable(final: str | os.PathLike, step: str | None = None) -> None:
    """Refuse an output path whose present content we may not replace.

    A file output (step None) may replace a file but never a folder. A folder output of `step` may replace a
    missing or empty folder, or a previous output of the same step (its marker names the step) that holds
    nothing but the files that step wrote (the marker lists them).
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
    if not any(final.iterdir()):
        return
    marker = marker_lines(final)
    if marker[:1] == [step]:
        if len(marker) == 1:  # an older version's marker: the step only, no file list
            raise InputError(final, f"was written by an older '{step}' that listed no files: remove it yourself")
        foreign = unlisted_files(final, marker)
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise InputError(
                final,
                f"holds {', '.join(foreign[:3])}{more}, which '{step}' did not write; move them or give another "
                f"folder (nothing was changed)",
            )
        return
    raise InputError(
        final,
        f"is a non-empty folder that '{step}' did not write (no {OUTPUT_MARKER} naming it); "
        f"give a new or empty folder (nothing was changed)",
    )


def output_step(folder: str | os.PathLike) -> str | None:
    """The step named by a folder's output marker, or None."""
    lines = marker_lines(folder)
    return lines[0] if lines else None


def marker_lines(folder: str | os.PathLike) -> list[str]:
    """A folder's output marker: the step, then the files it wrote; [] without a readable marker."""
    marker = Path(folder) / OUTPUT_MARKER
    try:
        return marker.read_text().splitlines() if marker.is_file() else []
    except (OSError, UnicodeDecodeError):
        return []


def folder_files(folder: Path) -> list[str]:
    """Everything in a folder but its sub-folders and marker, as sorted relative POSIX paths (links not followed)."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if (path.is_symlink() or not path.is_dir()) and path.name not in (OUTPUT_MARKER, SNAKEMAKE_TIMESTAMP)
    )


def foreign_files(root: str | os.PathLike) -> list[Path]:
    """Files under `root` inside folder outputs (those with a marker that lists its files) that their step did not
    write, sorted. A marker of an older version lists none: nothing to compare there."""
    found = []
    for marker in sorted(Path(root).rglob(OUTPUT_MARKER)):
        listed = marker_lines(marker.parent)
        if len(listed) > 1:
            found += [marker.parent / name for name in unlisted_files(marker.parent, listed)]
    return found


def unmarked_folders(paths) -> list[Path]:
    """The non-empty folders among `paths` without an output marker: no step of the pipeline wrote them."""
    return sorted(p for p in map(Path, paths) if p.is_dir() and not (p / OUTPUT_MARKER).is_file() and any(p.iterdir()))


def unlisted_files(folder: Path, marker: list[str]) -> list[str]:
    """The files in a folder output that its marker (marker_lines: the step, then its files) does not list."""
    return sorted(set(folder_files(folder)) - set(marker[1:]))


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (since 4.7): setting it to read it, the
    only other way, would briefly change it for every thread."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
