"""mrcnn.fileio: atomic writes, write checks before long work, stale temp files."""
import errno
import os
import time

import pytest

from mrcnn import fileio
from mrcnn.errors import OutputPathError, UserInputError


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with fileio.atomic_write(target) as tmp:
        assert os.path.basename(tmp).startswith(".out.txt.") and tmp.endswith(".tmp")
        with open(tmp, "w") as f:
            f.write("new")
        assert target.read_text() == "old"       # nothing visible before the rename
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]
    assert (os.stat(target).st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "submission.json"
    target.write_text("[1]")

    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "_fsync_path", no_space)
    with pytest.raises(OutputPathError, match="submission.json.*disk is full") as info:
        with fileio.atomic_write(target) as tmp:
            with open(tmp, "w") as f:
                f.write("[1, 2]")
    assert isinstance(info.value, UserInputError) and isinstance(info.value, OSError)
    assert str(target) in str(info.value)
    assert target.read_text() == "[1]" and os.listdir(tmp_path) == ["submission.json"]


def test_h5py_style_disk_full_message_is_recognised(tmp_path):
    err = OSError("Can't write data (file write failed: errno = 28, error message = "
                  "'No space left on device')")
    assert "disk is full" in str(fileio.output_path_error(tmp_path / "w.h5", err))


def test_other_errors_in_the_body_pass_through_and_clean_up(tmp_path):
    with pytest.raises(TypeError):
        with fileio.atomic_write(tmp_path / "x.json"):
            raise TypeError("a bug, not a disk problem")
    assert os.listdir(tmp_path) == []


def test_check_output_file_creates_a_missing_parent(tmp_path):
    path = fileio.check_output_file(tmp_path / "new" / "deeper" / "out.json")
    assert path == str(tmp_path / "new" / "deeper" / "out.json")
    assert os.listdir(tmp_path / "new" / "deeper") == []   # the probe is gone


def test_read_only_folder_is_found_before_writing(read_only_folder):
    with pytest.raises(OutputPathError, match="read_only.*not writable"):
        fileio.check_output_file(read_only_folder / "out.json", "--out file")
    with pytest.raises(OutputPathError, match="read_only"):
        fileio.check_output_folder(read_only_folder, "--logs folder")
    with pytest.raises(OutputPathError, match="out.json"):
        with fileio.atomic_write(read_only_folder / "out.json"):
            pass


def test_a_path_under_a_regular_file_fails_even_for_root(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputPathError, match="file.txt"):
        fileio.check_output_file(tmp_path / "file.txt" / "sub" / "out.json")
    with pytest.raises(OutputPathError, match="is a folder"):
        fileio.check_output_file(tmp_path)


def _file(path, content=b"", age=3600):
    path.write_bytes(content)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_only_our_stale_temp_files_are_removed(tmp_path):
    # What kill -9 of submit leaves: a zero-byte temp file next to the target.
    ours_old = _file(tmp_path / ".submission.json.k2x_9abc.tmp")
    ours_new = _file(tmp_path / ".submission.json.zz1234ab.tmp", age=-60)  # a live writer's
    others = [_file(tmp_path / name, b"keep") for name in (
        ".other.json.k2x_9abc.tmp", "submission.json.tmp", ".submission.json.k2x_9abc.tmp.bak",
        "submission.json")]
    fileio.check_output_file(tmp_path / "submission.json")
    assert not ours_old.exists() and ours_new.exists()
    assert all(path.exists() for path in others)

    # What kill -9 during a checkpoint write leaves.
    run = tmp_path / "run"
    run.mkdir()
    stale = _file(run / ".mask_rcnn_tinyvoc_0002.h5.ab_cd123.tmp", b"\0" * 100)
    kept = _file(run / "mask_rcnn_tinyvoc_0001.h5", b"weights")
    assert fileio.remove_stale_temp_files(run, r"mask_rcnn_tinyvoc_\d{4}\.h5") == [str(stale)]
    assert os.listdir(run) == [kept.name]
