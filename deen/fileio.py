"""Small file helpers shared by every reader and writer: the image and video suffixes the
project reads, atomic writes (with the process umask's modes) and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from deen.errors import DeenError

#: Image files read as person crops, frames of an image-folder stream, or dataset images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Video files read as streams or calibration sources.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def require_new_folder(path: str | os.PathLike[str], purpose: str = "") -> Path:
    """``path`` as a Path, if nothing is there yet: writers of whole folders (scenes,
    datasets, model repositories) never write into or over an existing one."""
    path = Path(path)
    if path.exists():
        raise DeenError(f"{path}: already exists; choose a new folder{purpose and ' ' + purpose}")
    return path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success.

    A crash, an exception or a failed verification inside the block leaves no file at
    ``final`` that could be mistaken for a finished one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, default_mode())  # mkstemp's 0600 would hide it from others
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


_UMASK_LOCK = threading.Lock()


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` or ``mkdir()`` would give a new file or folder under the
    process umask (temporary files and folders start private: 0600/0700)."""
    with _UMASK_LOCK:  # reading the umask means setting it; no other thread may see 0
        mask = os.umask(0o022)
        os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def publish_dir(scratch: Path, final: Path) -> None:
    """Rename a finished temporary folder (``tempfile.mkdtemp``) onto ``final``, with the
    mode a folder made by ``mkdir`` would have."""
    os.chmod(scratch, default_mode(directory=True))
    scratch.rename(final)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
