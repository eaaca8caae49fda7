"""The one writer of secret files (services.kit.secretfile): 0600 whatever the umask, complete or absent, the
first writer wins with replace=False, and no temporary file stays behind; the depot's dev master key and
rsctl's files go through it."""
from __future__ import annotations

import os
import stat

import pytest

from services.depot import masterkeyfile
from services.depot.barrier import MasterKeyError
from services.kit import secretfile
from services.kit.secretfile import write_secret_file


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_0600_in_a_new_0700_directory_whatever_the_umask(tmp_path, open_umask):
    path = tmp_path / "new" / "token"
    assert write_secret_file(path, b"s3cret\n") is True
    assert path.read_bytes() == b"s3cret\n"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert os.listdir(path.parent) == ["token"]


def test_replace_overwrites_and_tightens_an_existing_file(tmp_path, open_umask):
    path = tmp_path / "token"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    assert write_secret_file(path, b"new") is True
    assert path.read_bytes() == b"new" and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["token"]


def test_without_replace_the_first_writer_wins(tmp_path):
    path = tmp_path / "key"
    assert write_secret_file(path, b"first", replace=False) is True
    assert write_secret_file(path, b"second", replace=False) is False
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["key"]


def test_a_failed_move_leaves_no_temporary_file_and_raises(tmp_path):
    path = tmp_path / "taken"
    path.mkdir()  # a directory where the file should go: the rename fails
    (path / "inside").write_text("x")
    with pytest.raises(OSError):
        write_secret_file(path, b"data")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(secretfile.os, "write", full_disk)
    with pytest.raises(OSError):
        write_secret_file(tmp_path / "token", b"data")
    assert os.listdir(tmp_path) == []


def test_the_dev_master_key_is_written_by_it_and_a_lost_race_loads_the_winner(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "master.key"
    winner = masterkeyfile.load_master_key(path, profile="dev", create_if_missing=True)
    calls = []
    real = masterkeyfile.write_secret_file

    def recorded(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(masterkeyfile, "write_secret_file", recorded)
    assert masterkeyfile._create_dev_key_file(path) is None  # lost the race: the existing key stays
    assert calls == [{"replace": False}]
    assert masterkeyfile.load_master_key(path, profile="dev", create_if_missing=True).key_id == winner.key_id


def test_a_dev_master_key_that_cannot_be_written_is_a_master_key_error_naming_the_file(tmp_path, monkeypatch):
    def read_only(path, data, *, replace=True):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(masterkeyfile, "write_secret_file", read_only)
    path = tmp_path / "master.key"
    with pytest.raises(MasterKeyError, match=f"cannot create master key file {path}: Read-only file system"):
        masterkeyfile.load_master_key(path, profile="dev", create_if_missing=True)
    assert not path.exists()
