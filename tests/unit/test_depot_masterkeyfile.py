"""The master key's file (services.depot.masterkeyfile): its format, the dev key generated once with mode 0600,
and what the production profile refuses."""
import base64
import os
import stat

import pytest

from services.depot import barrier as b
from services.depot import masterkeyfile as f
from services.depot.barrier import MasterKeyError


def write_key(path, content: bytes, mode=0o600):
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def prod_line(raw=None):
    return b"rsmk1:" + base64.b64encode(raw or os.urandom(32)) + b"\n"


def test_dev_generates_0600_and_reuses(tmp_path):
    path = tmp_path / "keys" / "master.key"
    mk = f.load_master_key(path, profile="dev", create_if_missing=True)
    assert mk.generated is True and mk.is_dev is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert content.startswith(b"rsdev1:") and content.endswith(b"\n")
    assert len(base64.b64decode(content[len(b"rsdev1:"):].strip())) == 32
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp left over

    again = f.load_master_key(path, profile="dev", create_if_missing=True)
    assert again.generated is False and again.is_dev
    assert again.key_id == mk.key_id
    assert path.read_bytes() == content
    # a ring wrapped by the first load unwraps with the second
    blob = b.KeyRing(mk).new_ring_key(1)
    assert b.opens_ring_key(again, 1, blob)


def test_dev_missing_without_create(tmp_path):
    with pytest.raises(MasterKeyError):
        f.load_master_key(tmp_path / "nope", profile="dev", create_if_missing=False)


def test_dev_accepts_production_key(tmp_path):
    path = write_key(tmp_path / "k", prod_line())
    mk = f.load_master_key(path, profile="dev", create_if_missing=True)
    assert mk.is_dev is False and mk.generated is False


def test_production_loads_production_key(tmp_path):
    raw = os.urandom(32)
    path = write_key(tmp_path / "k", prod_line(raw), 0o400)
    mk = f.load_master_key(path, profile="production", create_if_missing=False)
    assert mk.is_dev is False
    assert mk.key_id == b.master_key_from_bytes(raw).key_id
    assert b._master_key_file(b.master_key_from_bytes(raw)) == prod_line(raw)  # the barrier's writer of the format


def test_production_refuses_dev_key(tmp_path):
    path = tmp_path / "k"
    f.load_master_key(path, profile="dev", create_if_missing=True)
    with pytest.raises(MasterKeyError, match="(?i)dev"):
        f.load_master_key(path, profile="production", create_if_missing=True)


def test_production_refuses_missing_and_never_generates(tmp_path):
    path = tmp_path / "k"
    with pytest.raises(MasterKeyError):
        f.load_master_key(path, profile="production", create_if_missing=True)
    assert not path.exists()


@pytest.mark.parametrize("content", [
    b"rsmk1:" + base64.b64encode(os.urandom(16)) + b"\n",  # short
    b"rsmk1:" + base64.b64encode(os.urandom(31)) + b"\n",  # one byte short
    b"rsmk1:" + base64.b64encode(os.urandom(33)) + b"\n",  # long
    b"rsmk1:\n",
])
def test_production_refuses_wrong_length(tmp_path, content):
    path = write_key(tmp_path / "k", content)
    with pytest.raises(MasterKeyError):
        f.load_master_key(path, profile="production", create_if_missing=False)


@pytest.mark.parametrize("content", [
    b"",
    b"\n",
    b"garbage",
    base64.b64encode(os.urandom(32)),  # no prefix
    b"rsmk1:!!!not-base64!!!\n",
    b"rsmk2:" + base64.b64encode(os.urandom(32)),
    os.urandom(64),
    prod_line() + prod_line(),  # two lines
    b"x" * 100_000,
])
def test_production_refuses_garbage(tmp_path, content):
    path = write_key(tmp_path / "k", content)
    with pytest.raises(MasterKeyError) as ei:
        f.load_master_key(path, profile="production", create_if_missing=False)
    assert str(path) in str(ei.value)
    if len(content) > 12:
        assert content[6:].strip().decode("latin-1") not in str(ei.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_production_refuses_group_or_other_access(tmp_path, mode):
    path = write_key(tmp_path / "k", prod_line(), mode)
    with pytest.raises(MasterKeyError, match="group/other"):
        f.load_master_key(path, profile="production", create_if_missing=False)


def test_production_refuses_directory(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(MasterKeyError):
        f.load_master_key(d, profile="production", create_if_missing=False)


def test_unknown_profile(tmp_path):
    with pytest.raises(MasterKeyError):
        f.load_master_key(tmp_path / "k", profile="prod", create_if_missing=True)


def test_master_key_error_message_has_no_key(tmp_path):
    raw = os.urandom(32)
    path = write_key(tmp_path / "k", b"rsdev1:" + base64.b64encode(raw) + b"\n")
    with pytest.raises(MasterKeyError) as ei:
        f.load_master_key(path, profile="production", create_if_missing=False)
    assert base64.b64encode(raw).decode() not in str(ei.value)
