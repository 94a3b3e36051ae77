"""The data directory is private to the user who runs Vigie.

It holds the warehouse (pseudonymized rows), the logs, the stewards' log (texts from
the identified zone), the pseudonym key and the warehouse server's password: nobody
else on the machine may read any of it. Every process that opens it (``vigie up``, the
worker, ``vigie warehouse serve``) calls ``secure_data_dir`` first: the umask makes
everything created afterwards (by Python, chDB, Tansu, SQLite, child processes, which
inherit it) 0600 / 0700, and the explicit modes tighten a directory created by an
older version or by hand.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class DataDirNotPrivate(PermissionError):
    """The data directory cannot be made private (another user owns part of it)."""


PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def secure_data_dir(path: Path) -> Path:
    """Set a private umask for this process, create ``path`` 0700 and tighten what it
    already holds (directories 0700, files 0600); return ``path``."""
    os.umask(PRIVATE_UMASK)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    # The directory itself may be a link the user chose (~/vigie → /srv/vigie): tighten
    # what it points to; links inside the tree are never followed.
    top = path.resolve()
    _own(top)
    _tighten(top, DIR_MODE)
    for root, dirs, files in os.walk(top):
        for name in dirs:
            _own(Path(root, name))
            _tighten(Path(root, name), DIR_MODE)
        for name in files:
            _tighten(Path(root, name), FILE_MODE)
    return path


def _own(directory: Path) -> None:
    """Refuse a directory another user owns: its owner can rename what it holds (put their
    own key in place of the pseudonym key) and loosen its mode again, whatever we set. Found
    with a data dir pre-created by another user: accepted as is when Vigie ran as root."""
    try:
        info = directory.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid != os.geteuid():
        raise DataDirNotPrivate(
            f"{directory} belongs to another user (uid {info.st_uid}): the data directory must be "
            "owned by the user who runs Vigie"
        )


def _tighten(path: Path, mode: int) -> None:
    """Remove group and other permissions (keep the owner's, e.g. an executable bit)."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return  # a link's mode is meaningless, and chmod would follow it out of the tree
        current = stat.S_IMODE(info.st_mode)
        wanted = mode if mode == DIR_MODE else (current & 0o700) | FILE_MODE
        if current != wanted:
            os.chmod(path, wanted)
    except FileNotFoundError:
        pass  # removed while walking (a merge of chDB parts): nothing to protect


def write_private(path: Path, text: str) -> None:
    """Create or replace a file readable by its owner only (written 0600 from the start,
    never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)
