"""Writing files so that nothing is ever half-written.

Every file the tool writes goes through :func:`write_atomic` (a temporary file in the same
folder, flushed, then renamed over the target), and every *set* of files (an ``apply``,
``export`` or ``distill`` output folder) through :func:`staged_output`: the files are written
into a temporary folder beside the target, and only when all of them are complete is that
folder swapped in, in one atomic exchange where the kernel offers it. A crash, a kill or a
full disk leaves either the previous folder as it was or the new one whole — never a mix.

Errors of the file system that the user can fix (no space left, no permission, a read-only
disk) are turned into :class:`DiskError`, one line naming the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from autocompress.errors import AutocompressError

# Errors of the machine, not of the program: reported in one line, never as a traceback.
USER_FIXABLE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}
# Files that mark a folder as written by this tool (apply, export and distill write both).
OUTPUT_MARKERS = ("model.pt", "report.json")


class OutputError(AutocompressError):
    """An output target is refused (a file, a foreign folder, no permission): bad input."""


class DiskError(AutocompressError):
    """Writing failed on the machine's side (no space left, a read-only disk): exit 1."""


def describe_os_error(exc: OSError) -> str | None:
    """One line for an OSError the user can fix (full disk, permissions), else None."""
    reason = USER_FIXABLE.get(exc.errno or 0)
    if reason is None:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {reason}"


@contextlib.contextmanager
def os_errors_as_output_errors() -> Iterator[None]:
    """Turn user-fixable OSErrors raised inside into :class:`DiskError`."""
    try:
        yield
    except OSError as exc:
        line = describe_os_error(exc)
        if line is None:
            raise
        raise DiskError(line) from None


def write_atomic(path: str | Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` whole or not at all; the file gets permission ``mode``.

    Example::

        write_atomic("runs/x/report.json", json.dumps(report))
    """
    path = Path(path)
    blob = data.encode() if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    return replace_atomic(path, write, mode)


def replace_atomic(path: str | Path, write: Callable[[Path], None], mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    For writers that take a path (``torch.save``, ``savefig``, ``write_html``). The temporary
    file is removed if ``write`` fails, so a full disk leaves no stray file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_previous_output(folder: Path) -> bool:
    """Whether ``folder`` holds an output of this tool (``model.pt`` and ``report.json``)."""
    return all((folder / name).is_file() for name in OUTPUT_MARKERS)


def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse an output folder before any work: a file, a foreign non-empty folder (unless
    ``force``), or a place this process cannot write. Leaves nothing behind."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not is_previous_output(out) and not force:
        raise OutputError(
            f"--out {out} is a non-empty folder that is not an autocompress output; "
            "name another folder, or pass --force to replace it"
        )
    parent = _existing_parent(out.absolute())
    try:  # a real write, not os.access: root on a read-only disk is refused too
        os.rmdir(tempfile.mkdtemp(prefix=".autocompress-probe-", dir=parent))
    except OSError as exc:
        reason = USER_FIXABLE.get(exc.errno or 0, exc.strerror or str(exc))
        raise OutputError(f"cannot write into {parent}: {reason}") from None


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if candidate.is_dir() else candidate.parent
    return Path("/")


@contextlib.contextmanager
def staged_output(out: Path, force: bool = False) -> Iterator[Path]:
    """A temporary folder to write a whole output set into; swapped in for ``out`` at the end.

    If the block raises (or the process dies), ``out`` is left exactly as it was and the
    temporary folder is removed (a killed process leaves a hidden ``.out.*.partial`` folder,
    never a mixed ``out``). Example::

        with staged_output(Path("runs/best")) as tmp:
            (tmp / "report.json").write_text("{}")
    """
    check_output_dir(out, force)
    out = out.absolute()
    with os_errors_as_output_errors():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        with os_errors_as_output_errors():
            yield tmp
            os.chmod(tmp, 0o755)
            swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``. An existing ``target`` is exchanged with ``new`` in one
    atomic step (Linux ``renameat2``), so ``new`` then holds the old folder for removal;
    without that call, the old folder is renamed aside first."""
    try:
        os.rename(new, target)  # no target yet (or an empty folder): plain rename
        return
    except OSError as exc:  # another writer got there first, or a previous output is there
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if _exchange(new, target):
        return
    aside = new.with_name(new.name + ".old")
    os.rename(target, aside)
    os.rename(new, target)
    os.rename(aside, new)  # removed with the temporary folder


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with ``renameat2(RENAME_EXCHANGE)``; False if unavailable."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # no such call, or a file system without exchange
    raise OSError(err, os.strerror(err), str(b))
