"""Small file helpers shared by every reader and writer: the image and video suffixes the
project reads, the check of an output before any work (:func:`check_output`), atomic writes
(with the process umask's modes) and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from deen.errors import ParameterError

#: Image files read as person crops, frames of an image-folder stream, or dataset images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Video files read as streams or calibration sources.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def check_output(path: str | os.PathLike[str], parameter: str, *, folder: bool = False,
                 results: Iterable[str] = (), force: bool = False,
                 new: bool = False) -> Path:
    """``path`` as a Path once it is known that a command can write its output there: the
    one check of every output, made before any work starts so that a long run never fails
    at its end. Raises :class:`~deen.errors.ParameterError` naming ``parameter`` when

    - something on the way to ``path`` is a file, or the nearest existing folder cannot be
      written (tried by creating and removing a temporary file in it, so permissions and
      read-only file systems are found as the writer would find them);
    - ``path`` is a folder where a file is wanted (``folder=False``), or a file where a
      folder is wanted (``folder=True``), or an existing file that cannot be written;
    - ``folder=True`` and ``path`` holds an earlier result: one of the entries ``results``
      names (the files and folders the writer puts there). With ``force`` those entries are
      deleted instead, so that one folder never mixes two runs; anything else in the
      folder is left alone;
    - ``new=True`` (writers of whole folders: datasets, scenes, model repositories, which
      publish the folder in one rename) and anything is at ``path``: such a folder is not
      the command's to delete, so ``force`` does not apply.

    An existing file where a file is wanted is not an error: its writer replaces it (or, for
    a log such as a JSON-lines events file, appends to it). Nothing is created here; the
    writer makes the folders it needs.
    """
    path = Path(path)
    if new and (path.exists() or path.is_symlink()):
        raise ParameterError(parameter, path, "already exists; choose a new folder")
    if path.exists() and path.is_dir() != folder:
        raise ParameterError(parameter, path, "is a folder; give a file name" if not folder
                             else "is a file, not a folder")
    _require_writable(path, parameter)
    if folder and path.is_dir():
        earlier = [name for name in results
                   if (path / name).exists() or (path / name).is_symlink()]
        if earlier and not force:
            raise ParameterError(parameter, path, f"holds an earlier result ({', '.join(earlier)}"
                                 "); choose another folder, or add {force} to replace it",
                                 mentions=("force",))
        for name in earlier:
            entry = path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return path


def _require_writable(path: Path, parameter: str) -> None:
    """The file or folder at ``path`` can be written, or (not there yet) made: the nearest
    existing folder on the way to it accepts a new file."""
    if path.is_file():
        if not os.access(path, os.W_OK):
            raise ParameterError(parameter, path, "cannot be written (permission denied)")
        return
    existing = path if path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ParameterError(parameter, path, f"{existing} is a file, so nothing can be "
                             "written under it")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ParameterError(parameter, path, f"cannot write in {existing} "
                             f"({exc.strerror or exc})") from None


def require_new_folder(path: str | os.PathLike[str], parameter: str = "out") -> Path:
    """``path`` as a Path, if nothing is there yet: writers of whole folders (scenes,
    datasets, model repositories) never write into or over an existing one
    (:func:`check_output` with ``new=True``)."""
    return check_output(path, parameter, folder=True, new=True)


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
