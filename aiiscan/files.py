"""Files a command writes: one policy for every output (reports, HTML pages, heads, tables,
plots), atomic writes, permissions, timestamps. No torch here.

Outputs are checked before any work starts, so a mistake costs seconds, not a scan:
- missing parent folders are created;
- a path that exists and is not a regular file (a folder, a device such as /dev/null, a FIFO,
  a symbolic link) is refused: aiiscan only ever replaces regular files;
- an existing file is refused unless ``overwrite`` (``--overwrite``): a report is never
  replaced silently;
- the folder must accept a new file of the longest name the command will create (write
  permission and the file system's name length are probed with a real temporary file).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from .errors import AiiscanError, UsageError


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0600 is too private for reports and
    cards that others read)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


# Temporary names: ".NAME." + TEMP_RANDOM random characters + ".tmp"; never guessable, never reused.
TEMP_RANDOM = 12
_TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_CREATE = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def create_temp(folder: str | Path, name: str) -> tuple[int, Path]:
    """A new, empty file in ``folder`` for ``name``'s temporary: an unpredictable name, created
    with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a file or link planted under any name is never
    opened, followed or truncated), mode as a plain ``open()`` would give. Returns (fd, path).

    This is the only way aiiscan makes a temporary file beside an output: every writer (reports,
    sidecars, parts, HTML pages, head files, cards, checkpoints, plots, tables) goes through
    ``atomic_output``, which writes through the descriptor this returns."""
    folder = Path(folder)
    for _ in range(100):
        tmp = folder / f".{name}.{''.join(secrets.choice(_TEMP_ALPHABET) for _ in range(TEMP_RANDOM))}.tmp"
        try:
            return os.open(tmp, _CREATE, 0o666), tmp  # the umask applies, as for open()
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")  # pragma: no cover


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: yields a binary file open on a fresh temporary in the same
    folder (``create_temp``); when the block ends it is flushed, fsynced and renamed over
    ``path`` (a rename never follows a link at ``path``, it replaces it). On any error, or an
    interrupt, the temporary is removed and ``path`` is untouched.

    Writers that want a file name (pyarrow, matplotlib, safetensors) are given the file object
    instead, so nothing ever reopens the temporary by name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path.parent, path.name)
    f = os.fdopen(fd, "w+b")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)


# The longest name a command derives from its output's name: ".NAME." + random + ".tmp".
TEMP_OVERHEAD = 2 + TEMP_RANDOM + 4


class OutputError(AiiscanError):
    """An output path that cannot or may not be written."""


class NotRegular(OSError):
    """A path that names a FIFO, a socket, a device or a folder where a file was expected."""

    def __init__(self, path: str | os.PathLike, what: str):
        super().__init__(f"not a regular file ({what})")
        self.strerror, self.filename = f"not a regular file ({what})", str(path)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a file a user or a report named, for reading: the open never blocks (a plain
    ``open()`` of a FIFO waits for a writer, i.e. for ever), and anything but a regular file is
    refused with ``NotRegular`` before a byte is read. Every such read goes through here."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(path, "a folder" if stat.S_ISDIR(mode) else "FIFO, socket or device")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_user_file(path: str | Path, limit: int, where: str) -> bytes:
    """A small file the user names (trust anchors, a rules file), read with a cap: a wrong path,
    a FIFO or an oversized file is a usage error naming ``where``, never a wait, a traceback or a
    huge read."""
    try:
        with open_regular(path) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UsageError(f"{where}: over {limit} bytes")
    return data


def replace_folder(built: Path, final: Path) -> None:
    """Move a folder built privately (inside a ``tempfile.mkdtemp`` folder beside ``final``) into
    place in one rename: a derived cache entry (the runtimes' exported graphs) appears whole or
    not at all."""
    if final.is_symlink():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final, ignore_errors=True)
    os.replace(built, final)


def check_output(path: str | Path, *, overwrite: bool = False, companions: Sequence[str] = (),
                 what: str = "output") -> Path:
    """Validate ``path`` (and sibling names derived from it) for writing; create its folder.

    ``companions`` are suffixes of files or folders written next to it (``.parts``,
    ``.meta.json``...): they must fit the name length too, and must not be non-regular files.
    An object-store URL (``s3://bucket/key``) gets no local check: it must name an object, not
    a prefix, and an existing object is refused unless ``overwrite``.
    """
    from .inputs import is_remote
    if is_remote(str(path)):
        check_url_output(str(path), overwrite=overwrite, what=what)
        return path  # type: ignore[return-value]  # a URL stays a string
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"{what} {str(path)!r} names a folder, not a file")
    for candidate in (path, *(path.with_name(path.name + s) for s in companions if s != ".parts")):
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot use {what} {candidate}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a symbolic link"
                    if stat.S_ISLNK(st.st_mode) else "a device or special file")
            raise OutputError(f"{what} {candidate} exists and is {kind}; aiiscan only replaces regular "
                              "files: choose another path")
        if candidate == path and not overwrite:
            raise OutputError(f"{what} {path} already exists: pass --overwrite to replace it, or choose "
                              "another path")
    parent = path.parent
    made = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again if refused
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {parent} for {what} {path}: "
                          f"{exc.strerror or exc}") from None
    try:
        _check_folder(path, companions, what)
    except OutputError:
        for folder in made:  # deepest first: a refused output leaves nothing behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return path


def _check_folder(path: Path, companions: Sequence[str], what: str) -> None:
    """The folder takes the output's longest name and a real temporary file."""
    parent = path.parent
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    longest = max([len(os.fsencode(path.name)) + TEMP_OVERHEAD,
                   *(len(os.fsencode(path.name + s)) for s in companions)])
    if longest > name_max:
        raise OutputError(f"{what} name {path.name!r} is too long for this file system (aiiscan needs "
                          f"{longest - len(os.fsencode(path.name))} more bytes than it for temporary "
                          f"and side files; the limit is {name_max}): choose a shorter name")
    check_writable(parent, path.name, what=f"{what} {path}")


def check_folder_output(folder: str | Path, what: str = "output folder") -> Path:
    """A folder a command writes files into (``evaluate --plots``): created if missing, refused if
    it is something else (a file, a link), probed with a real temporary file."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise OutputError(f"cannot create {what} {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{what} {folder} exists and is not a folder")
    check_writable(folder, "plot.png", what=f"into {what} {folder}")
    return folder


def check_writable(folder: str | Path, name: str, what: str) -> None:
    """The folder takes a new temporary file for ``name`` (permissions, a read-only mount, a
    full inode table), probed with a real one made as every writer makes it."""
    try:
        fd, probe = create_temp(folder, name)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {exc.strerror or exc}") from None


def check_url_output(url: str, *, overwrite: bool = False, what: str = "output") -> None:
    """An object-store output: a writable scheme, an object name, no existing object unless
    ``overwrite``. One request (a HEAD, or a listing of the name as a prefix)."""
    from .inputs.store import LISTABLE, StoreError, scheme, url_kind
    if scheme(url) not in LISTABLE:
        raise OutputError(f"{what} {url}: aiiscan writes only to s3://, gs:// and az:// (abfs://) URLs")
    if url.endswith("/") or url.rstrip("/").count("/") <= 2:
        raise OutputError(f"{what} {url!r} names a bucket or a prefix, not an object")
    try:
        kind = url_kind(url)
    except StoreError as exc:
        raise OutputError(f"cannot check {what} {url}: {exc}") from None
    if kind == "directory":
        raise OutputError(f"{what} {url} is a prefix with objects under it; choose an object name")
    if kind == "file" and not overwrite:
        raise OutputError(f"{what} {url} already exists: pass --overwrite to replace it, or choose "
                          "another name")
