"""Private, atomic, durable files: the one writer for state, backups, lock info and plan files.

A write never leaves a half-written file behind: the new bytes go to a temp
file in the same folder (mode 0600 from the moment it exists), are flushed and
fsynced, then ``os.replace`` swaps it in atomically and the folder is fsynced
so the rename itself survives a power cut. Folders made on the way are 0700.
"""

from __future__ import annotations

import os
import uuid
from contextlib import suppress
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
TEMP_SUFFIX = ".tmp"


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0700, whatever the umask.

    Folders that already exist are left as they are: they are not ours to change.
    """
    missing: list[Path] = []
    current = Path(folder)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, FOLDER_MODE)
        except FileExistsError:
            continue  # another run made it first
        # mkdir's mode is filtered by the umask (umask 0o777 would give d---------).
        os.chmod(path, FOLDER_MODE)


def atomic_write(target: Path, data: bytes, *, durable: bool = True, make_folders: bool = True) -> None:
    """Replace ``target`` with ``data`` atomically (temp file, fsync, rename, folder fsync).

    The file is 0600 from creation and missing folders are made 0700. ``target``
    must not be a symlink (``StateStore`` resolves them): the rename would
    replace the link with a plain file. On any failure the temp file is removed and
    ``target`` keeps its previous content. ``durable=False`` skips both fsyncs
    (still atomic for readers) for files that mean nothing after a machine
    crash, such as lock info. ``make_folders=False`` leaves a missing folder an
    ``OSError`` (a plan file's ``--out`` folder is the user's to make).
    """
    if make_folders:
        make_private_folder(target.parent)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        _write_all(fd, data, durable=durable)
        os.replace(temp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_folder(target.parent)


def _write_all(fd: int, data: bytes, *, durable: bool = True) -> None:
    # os.fdopen owns fd from here on and closes it, even on error.
    with os.fdopen(fd, "wb") as handle:
        if hasattr(os, "fchmod"):
            os.fchmod(handle.fileno(), FILE_MODE)  # exactly 0600 whatever the umask did
        handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """fsync a folder so a rename inside it is durable (a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; nothing more we can do
    finally:
        os.close(fd)
