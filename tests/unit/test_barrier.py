import base64
import os
import pickle
import stat

import pytest

from services.depot import barrier as b
from services.depot.barrier import (
    BarrierError,
    DecryptionFailed,
    EntryContext,
    KeyRing,
    MasterKeyError,
)

CTX = EntryContext(entry_id="e-1", customer="C100", system="SYS-A")
FIELD = "password"
SECRET = "correct horse battery staple"


@pytest.fixture
def master():
    return b.master_key_from_bytes(os.urandom(32))


@pytest.fixture
def ring(master):
    r = KeyRing(master)
    r.add(1, r.new_ring_key(1))
    return r


@pytest.fixture
def data_key():
    return b.new_data_key()


def flip(blob: bytes, bit: int) -> bytes:
    buf = bytearray(blob)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)


# ---------------------------------------------------------------- fields


def test_field_roundtrip(data_key):
    for text in ["", "x", SECRET, "ünïcødé ✓ 🔑", "a" * 10_000]:
        blob = b.encrypt_field(data_key, CTX, FIELD, 1, text)
        assert b.decrypt_field(data_key, CTX, FIELD, 1, blob) == text


def test_blob_format(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    assert blob[0] == 0x01
    assert len(blob) == 1 + 12 + len(SECRET.encode()) + 16
    assert SECRET.encode() not in blob


def test_fresh_nonce_each_encryption(data_key):
    blobs = [b.encrypt_field(data_key, CTX, FIELD, 1, SECRET) for _ in range(1000)]
    nonces = {blob[1:13] for blob in blobs}
    assert len(nonces) == 1000
    assert len(set(blobs)) == 1000


def test_every_single_bit_flip_fails(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, "pw!")
    assert b.decrypt_field(data_key, CTX, FIELD, 1, blob) == "pw!"
    for bit in range(len(blob) * 8):
        with pytest.raises(DecryptionFailed):
            b.decrypt_field(data_key, CTX, FIELD, 1, flip(blob, bit))


def test_truncated_blobs_fail(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, "x" * 32)
    assert len(blob) > 40
    for n in range(0, 41):
        with pytest.raises(DecryptionFailed):
            b.decrypt_field(data_key, CTX, FIELD, 1, blob[:n])


def test_truncated_wrapped_keys_fail(ring, master, data_key):
    dk_blob = b.wrap_data_key(ring, 1, data_key, CTX)
    rk_blob = ring.new_ring_key(2)
    for n in range(0, 41):
        with pytest.raises(DecryptionFailed):
            b.unwrap_data_key(ring, 1, dk_blob[:n], CTX)
        with pytest.raises(DecryptionFailed):
            b.unwrap_ring_key(master, 2, rk_blob[:n])


def test_non_bytes_blob_fails(data_key):
    for junk in [None, "abc", 123]:
        with pytest.raises(DecryptionFailed):
            b.decrypt_field(data_key, CTX, FIELD, 1, junk)


def test_memoryview_blob_accepted(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    assert b.decrypt_field(data_key, CTX, FIELD, 1, memoryview(blob)) == SECRET


def test_bad_version_byte_fails(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    for v in (0x00, 0x02, 0xFF):
        with pytest.raises(DecryptionFailed):
            b.decrypt_field(data_key, CTX, FIELD, 1, bytes([v]) + blob[1:])


@pytest.mark.parametrize(
    "ctx, field, version",
    [
        (EntryContext("e-2", "C100", "SYS-A"), FIELD, 1),
        (EntryContext("e-1", "C200", "SYS-A"), FIELD, 1),
        (EntryContext("e-1", "C100", "SYS-B"), FIELD, 1),
        (CTX, "username", 1),
        (CTX, FIELD, 2),
        # ambiguity probes: concatenation of parts must not collide
        (EntryContext("e-1C", "100", "SYS-A"), FIELD, 1),
        (EntryContext("e-1", "C100SYS-", "A"), FIELD, 1),
    ],
)
def test_moved_field_ciphertext_fails(data_key, ctx, field, version):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    with pytest.raises(DecryptionFailed):
        b.decrypt_field(data_key, ctx, field, version, blob)


def test_wrong_data_key_fails(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    with pytest.raises(DecryptionFailed):
        b.decrypt_field(b.new_data_key(), CTX, FIELD, 1, blob)


def test_decryption_failed_message_leaks_nothing(data_key):
    blob = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    with pytest.raises(DecryptionFailed) as ei:
        b.decrypt_field(data_key, CTX, "other", 1, blob)
    msg = str(ei.value)
    assert SECRET not in msg
    assert data_key.hex() not in msg and repr(data_key) not in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


def test_invalid_inputs_raise_barrier_error(data_key):
    with pytest.raises(BarrierError):
        EntryContext("", "C100", "SYS-A")
    with pytest.raises(BarrierError):
        b.encrypt_field(data_key[:16], CTX, FIELD, 1, SECRET)
    with pytest.raises(BarrierError):
        b.encrypt_field(data_key, CTX, "", 1, SECRET)
    with pytest.raises(BarrierError):
        b.encrypt_field(data_key, CTX, FIELD, 0, SECRET)
    with pytest.raises(BarrierError) as ei:
        b.encrypt_field(data_key, CTX, FIELD, 1, "bad \udc80 surrogate")
    assert "\udc80" not in str(ei.value) and ei.value.__suppress_context__


# ---------------------------------------------------------------- data keys


def test_data_key_roundtrip(ring, data_key):
    assert len(data_key) == 32 and data_key != b.new_data_key()
    blob = b.wrap_data_key(ring, 1, data_key, CTX)
    assert data_key not in blob
    assert b.unwrap_data_key(ring, 1, blob, CTX) == data_key


@pytest.mark.parametrize(
    "ctx",
    [
        EntryContext("e-2", "C100", "SYS-A"),
        EntryContext("e-1", "C200", "SYS-A"),
        EntryContext("e-1", "C100", "SYS-B"),
    ],
)
def test_wrapped_data_key_moved_to_other_entry_fails(ring, data_key, ctx):
    blob = b.wrap_data_key(ring, 1, data_key, CTX)
    with pytest.raises(DecryptionFailed):
        b.unwrap_data_key(ring, 1, blob, ctx)


def test_wrapped_data_key_wrong_version_fails(ring, data_key):
    ring.add(2, ring.new_ring_key(2))
    blob = b.wrap_data_key(ring, 1, data_key, CTX)
    with pytest.raises(DecryptionFailed):
        b.unwrap_data_key(ring, 2, blob, CTX)


def test_wrapped_data_key_bit_flips_fail(ring, data_key):
    blob = b.wrap_data_key(ring, 1, data_key, CTX)
    for bit in range(len(blob) * 8):
        with pytest.raises(DecryptionFailed):
            b.unwrap_data_key(ring, 1, flip(blob, bit), CTX)


def test_unknown_ring_version(ring, data_key):
    with pytest.raises(BarrierError):
        b.wrap_data_key(ring, 7, data_key, CTX)


def test_rotation_and_rewrap(ring, data_key):
    old = b.wrap_data_key(ring, 1, data_key, CTX)
    field = b.encrypt_field(data_key, CTX, FIELD, 1, SECRET)
    ring.add(2, ring.new_ring_key(2))
    assert ring.current_version == 2 and ring.versions() == [1, 2]
    # old ring key still decrypts
    assert b.unwrap_data_key(ring, 1, old, CTX) == data_key
    new = b.rewrap_data_key(ring, 1, old, CTX)
    dk = b.unwrap_data_key(ring, 2, new, CTX)
    assert dk == data_key
    # fields re-encrypted under the new version; old one no longer valid at v2
    with pytest.raises(DecryptionFailed):
        b.decrypt_field(dk, CTX, FIELD, 2, field)
    assert b.decrypt_field(dk, CTX, FIELD, 1, field) == SECRET


# ---------------------------------------------------------------- ring keys


def test_ring_key_wrap_unwrap(master):
    rk = os.urandom(32)
    blob = b.wrap_ring_key(master, 3, rk)
    assert rk not in blob
    assert b.unwrap_ring_key(master, 3, blob) == rk


def test_ring_key_wrong_master_fails(master):
    blob = b.wrap_ring_key(master, 1, os.urandom(32))
    other = b.master_key_from_bytes(os.urandom(32))
    with pytest.raises(DecryptionFailed):
        b.unwrap_ring_key(other, 1, blob)
    ring = KeyRing(other, {1: blob})  # lazy: constructing does not unwrap
    with pytest.raises(DecryptionFailed):
        b.wrap_data_key(ring, 1, b.new_data_key(), CTX)
    with pytest.raises(DecryptionFailed):
        KeyRing(other).add(1, blob)


def test_ring_key_wrong_version_fails(master):
    blob = b.wrap_ring_key(master, 1, os.urandom(32))
    with pytest.raises(DecryptionFailed):
        b.unwrap_ring_key(master, 2, blob)


def test_keyring_lazy_load_from_storage(master, data_key):
    r1 = KeyRing(master)
    stored = {}
    for v in (1, 2):
        stored[v] = r1.new_ring_key(v)
        r1.add(v, stored[v])
    blob = b.wrap_data_key(r1, 2, data_key, CTX)
    r2 = KeyRing(master, stored)
    assert r2.current_version == 2 and len(r2) == 2
    assert b.unwrap_data_key(r2, 2, blob, CTX) == data_key


def test_keyring_version_rules(master):
    ring = KeyRing(master)
    with pytest.raises(BarrierError):
        ring.current_version
    ring.add(1, ring.new_ring_key(1))
    with pytest.raises(BarrierError):
        ring.new_ring_key(1)
    with pytest.raises(BarrierError):
        ring.new_ring_key(0)
    with pytest.raises(BarrierError):
        ring.add(1, ring.new_ring_key(2))  # wrong version in AAD -> DecryptionFailed
    blob2 = ring.new_ring_key(2)
    ring.add(2, blob2)
    ring.add(2, blob2)  # idempotent
    with pytest.raises(BarrierError):
        ring.add(2, b.wrap_ring_key(master, 2, os.urandom(32)))


def test_record_use_limit(master):
    ring = KeyRing(master, usage_limit=3)
    ring.add(1, ring.new_ring_key(1))
    assert [ring.record_use(1) for _ in range(4)] == [False, False, True, True]
    assert ring.uses(1) == 4 and ring.uses(2) == 0
    assert b.DEFAULT_USAGE_LIMIT < 2**32
    with pytest.raises(BarrierError):
        KeyRing(master, usage_limit=0)


def test_wrap_data_key_counts_use(master):
    ring = KeyRing(master, usage_limit=2)
    ring.add(1, ring.new_ring_key(1))
    b.wrap_data_key(ring, 1, b.new_data_key(), CTX)
    assert ring.uses(1) == 1
    assert ring.record_use(1) is True


# ---------------------------------------------------------------- repr / pickling


def test_repr_hides_key_bytes(master, ring):
    raw = os.urandom(32)
    mk = b.master_key_from_bytes(raw)
    for obj in (mk, ring):
        for text in (repr(obj), str(obj)):
            assert raw.hex() not in text and repr(raw) not in text
            assert base64.b64encode(raw).decode() not in text
    ring_key = ring._key(1)
    assert ring_key.hex() not in repr(ring) and repr(ring_key) not in repr(ring)
    assert mk.key_id in repr(mk) and len(mk.key_id) == 8
    assert mk.key_id not in raw.hex()
    int(mk.key_id, 16)
    with pytest.raises(TypeError):
        pickle.dumps(mk)
    with pytest.raises(TypeError):
        pickle.dumps(ring)


def test_key_id_stable_and_distinct():
    raw = os.urandom(32)
    assert b.master_key_from_bytes(raw).key_id == b.master_key_from_bytes(raw).key_id
    assert b.master_key_from_bytes(raw).key_id != b.master_key_from_bytes(os.urandom(32)).key_id


def test_master_key_from_bytes_validation():
    for bad in (b"", os.urandom(16), os.urandom(33), "x" * 32, None):
        with pytest.raises(MasterKeyError):
            b.master_key_from_bytes(bad)


# ---------------------------------------------------------------- master key files


def write_key(path, content: bytes, mode=0o600):
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def prod_line(raw=None):
    return b"rsmk1:" + base64.b64encode(raw or os.urandom(32)) + b"\n"


def test_dev_generates_0600_and_reuses(tmp_path):
    path = tmp_path / "keys" / "master.key"
    mk = b.load_master_key(path, profile="dev", create_if_missing=True)
    assert mk.generated is True and mk.is_dev is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert content.startswith(b"rsdev1:") and content.endswith(b"\n")
    assert len(base64.b64decode(content[len(b"rsdev1:"):].strip())) == 32
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp left over

    again = b.load_master_key(path, profile="dev", create_if_missing=True)
    assert again.generated is False and again.is_dev
    assert again.key_id == mk.key_id
    assert path.read_bytes() == content
    # a ring wrapped by the first load unwraps with the second
    blob = b.wrap_ring_key(mk, 1, os.urandom(32))
    b.unwrap_ring_key(again, 1, blob)


def test_dev_missing_without_create(tmp_path):
    with pytest.raises(MasterKeyError):
        b.load_master_key(tmp_path / "nope", profile="dev", create_if_missing=False)


def test_dev_accepts_production_key(tmp_path):
    path = write_key(tmp_path / "k", prod_line())
    mk = b.load_master_key(path, profile="dev", create_if_missing=True)
    assert mk.is_dev is False and mk.generated is False


def test_production_loads_production_key(tmp_path):
    raw = os.urandom(32)
    path = write_key(tmp_path / "k", prod_line(raw), 0o400)
    mk = b.load_master_key(path, profile="production", create_if_missing=False)
    assert mk.is_dev is False
    assert mk.key_id == b.master_key_from_bytes(raw).key_id
    assert b.format_master_key_file(raw, dev=False) == prod_line(raw)


def test_production_refuses_dev_key(tmp_path):
    path = tmp_path / "k"
    b.load_master_key(path, profile="dev", create_if_missing=True)
    with pytest.raises(MasterKeyError, match="(?i)dev"):
        b.load_master_key(path, profile="production", create_if_missing=True)


def test_production_refuses_missing_and_never_generates(tmp_path):
    path = tmp_path / "k"
    with pytest.raises(MasterKeyError):
        b.load_master_key(path, profile="production", create_if_missing=True)
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
        b.load_master_key(path, profile="production", create_if_missing=False)


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
        b.load_master_key(path, profile="production", create_if_missing=False)
    assert str(path) in str(ei.value)
    if len(content) > 12:
        assert content[6:].strip().decode("latin-1") not in str(ei.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_production_refuses_group_or_other_access(tmp_path, mode):
    path = write_key(tmp_path / "k", prod_line(), mode)
    with pytest.raises(MasterKeyError, match="group/other"):
        b.load_master_key(path, profile="production", create_if_missing=False)


def test_production_refuses_directory(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(MasterKeyError):
        b.load_master_key(d, profile="production", create_if_missing=False)


def test_unknown_profile(tmp_path):
    with pytest.raises(MasterKeyError):
        b.load_master_key(tmp_path / "k", profile="prod", create_if_missing=True)


def test_master_key_error_message_has_no_key(tmp_path):
    raw = os.urandom(32)
    path = write_key(tmp_path / "k", b"rsdev1:" + base64.b64encode(raw) + b"\n")
    with pytest.raises(MasterKeyError) as ei:
        b.load_master_key(path, profile="production", create_if_missing=False)
    assert base64.b64encode(raw).decode() not in str(ei.value)


# --- log head seal ---------------------------------------------------------------------------------------------
def test_log_seal_is_bound_to_the_master_key_and_to_every_part_of_the_head(master):
    sealer = b.LogSealer(master)
    seal = sealer.seal("1234", 7, "ab" * 32)
    assert len(seal) == 64 and seal == b.LogSealer(master).seal("1234", 7, "ab" * 32)  # deterministic per key
    assert sealer.verifies("1234", 7, "ab" * 32, seal)
    for other in (("12345", 7, "ab" * 32), ("1234", 8, "ab" * 32), ("1234", 7, "ac" * 32), ("123", 47, "ab" * 32)):
        assert not sealer.verifies(*other, seal)
    another = b.LogSealer(b.master_key_from_bytes(os.urandom(32)))
    assert another.seal("1234", 7, "ab" * 32) != seal and not another.verifies("1234", 7, "ab" * 32, seal)
    for junk in (None, "", seal.upper(), seal[:-1], 42):
        assert not sealer.verifies("1234", 7, "ab" * 32, junk)


def test_log_sealer_shows_and_pickles_no_key_material(master):
    sealer = b.LogSealer(master)
    assert repr(sealer) == f"LogSealer(key_id={master.key_id!r})" and str(sealer) == repr(sealer)
    with pytest.raises(TypeError):
        pickle.dumps(sealer)
