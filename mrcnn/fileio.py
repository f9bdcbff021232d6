"""Output files: atomic writes, writability checks before long work, stale temp files.

Every file the package writes (checkpoints, submissions, evaluation reports) goes
through ``atomic_write``: the content goes to ``.<name>.<random>.tmp`` in the target's
folder (same file system, so the rename is atomic), is fsynced and renamed over the
target. Readers see the old file or the complete new one, never half of one.

A process killed mid-write (kill -9, power loss) cannot remove its temporary file;
``remove_stale_temp_files`` deletes those of *our* naming pattern that are older than
the current process, at the next run. Files of other names are never touched.

Failures to write (read-only folder, missing parent that cannot be created, full
disk) raise ``OutputPathError`` naming the path; ``check_output_file`` and
``check_output_folder`` find them before hours of work rather than after.
"""
import contextlib
import errno
import os
import re
import tempfile
import time

from mrcnn.errors import OutputPathError

__all__ = [
    "atomic_write",
    "check_output_file",
    "check_output_folder",
    "remove_stale_temp_files",
    "temp_file_regex",
    "output_path_error",
    "TEMP_SUFFIX",
]

TEMP_SUFFIX = ".tmp"
# Temporary files of an older process are stale; one of this process may be in use.
# The module is imported before this process writes any file, so its import time
# is a safe "process start" (a little later than the real one, never earlier).
_PROCESS_START = time.time()


def _temp_prefix(name):
    return f".{name}."


def temp_file_regex(name_regex):
    """The regex of our temporary files for target names matching ``name_regex``."""
    # mkstemp's random part is made of [a-z0-9_].
    return re.compile(r"\." + f"(?:{name_regex})" + r"\.[a-z0-9_]+" + re.escape(TEMP_SUFFIX))


def remove_stale_temp_files(folder, name_regex):
    """Deletes leftover temporary files of targets named like ``name_regex`` in ``folder``.

    folder: the folder of the targets (not searched recursively).
    name_regex: regex of the target file names, e.g. ``re.escape("submission.json")``
        or ``r"mask_rcnn_tinyvoc_\\d{4}\\.h5"``.

    Only files matching ``.<target>.<random>.tmp`` and last modified before this
    process started are removed (a concurrent writer's newer file is left alone).
    Returns the list of removed paths.
    """
    if not os.path.isdir(folder):
        return []
    pattern = temp_file_regex(name_regex)
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not pattern.fullmatch(name):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if os.path.isfile(path) and os.path.getmtime(path) < _PROCESS_START:
                os.remove(path)
                removed.append(path)
    return removed


def output_path_error(path, err, what="output file"):
    """An OutputPathError naming ``path`` and why writing it failed (``err``: an OSError)."""
    if isinstance(err, OutputPathError):
        return err
    if _disk_full(err):
        reason = "the disk is full (no space left on device); free some space or choose another folder"
    elif getattr(err, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the folder is not writable; choose another path"
    else:
        reason = f"{err.strerror or err}" if isinstance(err, OSError) else str(err)
    return OutputPathError(f"cannot write the {what} {path}: {reason}")


def _disk_full(err):
    # h5py reports a failed write as OSError whose text carries the C errno.
    return (getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in str(err) or "errno = 28" in str(err))


def check_output_folder(folder, what="output folder"):
    """Creates ``folder`` if needed and proves it writable by creating (and removing) a
    temporary file in it; raises OutputPathError naming it otherwise. Returns its
    absolute path.

    A real write is the only check that holds for every case: ``os.access`` says yes
    to root in a read-only folder and knows nothing of read-only file systems.
    """
    folder = os.path.abspath(os.fspath(folder))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write_check.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise output_path_error(folder, err, what) from err
    return folder


def check_output_file(path, what="output file"):
    """Before long work: the file at ``path`` can be written (its folder is created if
    missing), and stale temporary files of an earlier killed write are removed.
    Raises OutputPathError naming the path. Returns the absolute path."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise OutputPathError(f"cannot write the {what} {path}: it is a folder; give a file name")
    folder = check_output_folder(os.path.dirname(path), f"folder of the {what}")
    remove_stale_temp_files(folder, re.escape(os.path.basename(path)))
    return path


@contextlib.contextmanager
def atomic_write(path, what="output file"):
    """Yields a temporary path to write; on success it replaces ``path`` atomically.

    The temporary file (``.<name>.<random>.tmp`` next to ``path``) is fsynced, given
    the usual umask mode (mkstemp makes 0600 files) and renamed over ``path``; the
    folder is fsynced where the OS allows. On any error it is removed and ``path`` is
    untouched; an OSError (full disk, read-only folder) becomes OutputPathError naming
    ``path``. The folder must exist.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(os.path.basename(path)),
                                   suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as err:
        raise output_path_error(path, err, what) from err
    try:
        yield tmp
        _fsync_path(tmp)
        _set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise output_path_error(path, err, what) from err
        raise
    with contextlib.suppress(OSError):  # makes the rename durable; not possible everywhere
        _fsync_path(folder)


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_default_mode(path):
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
