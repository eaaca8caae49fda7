import ast
import base64
import os
import pickle
from pathlib import Path

import pytest

from services.depot import barrier as b
from services.depot.barrier import (
    BarrierError,
    DecryptionFailed,
    EntryContext,
    KeyRing,
    MasterKeyError,
    Sealed,
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
def sealed(ring):
    return b.seal_secret(ring, 1, CTX, FIELD, SECRET)


def flip(blob: bytes, bit: int) -> bytes:
    buf = bytearray(blob)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)


def with_ciphertext(sealed: Sealed, ciphertext) -> Sealed:
    return Sealed(sealed.key_version, sealed.wrapped_data_key, ciphertext)


def with_wrapped_key(sealed: Sealed, wrapped) -> Sealed:
    return Sealed(sealed.key_version, wrapped, sealed.ciphertext)


# ---------------------------------------------------------------- fields


def test_field_roundtrip(ring):
    for text in ["", "x", SECRET, "ünïcødé ✓ 🔑", "a" * 10_000]:
        assert b.open_secret(ring, CTX, FIELD, b.seal_secret(ring, 1, CTX, FIELD, text)) == text


def test_blob_format(sealed):
    assert sealed.key_version == 1
    assert sealed.ciphertext[0] == 0x01 and sealed.wrapped_data_key[0] == 0x01
    assert len(sealed.ciphertext) == 1 + 12 + len(SECRET.encode()) + 16
    assert len(sealed.wrapped_data_key) == 1 + 12 + 32 + 16
    assert SECRET.encode() not in sealed.ciphertext


def test_fresh_nonce_each_encryption(ring, sealed):
    seals = [b.seal_secret(ring, 1, CTX, FIELD, SECRET) for _ in range(1000)]
    assert len({s.wrapped_data_key[1:13] for s in seals}) == 1000  # 1000 wraps under one ring key
    assert len({s.ciphertext for s in seals}) == 1000
    # and 1000 encryptions under one data key (re-sealing keeps the entry's data key)
    ring.add(2, ring.new_ring_key(2))
    moved = [b.reseal_secret(ring, CTX, FIELD, sealed, 2) for _ in range(1000)]
    assert len({s.ciphertext[1:13] for s in moved}) == 1000
    assert len({s.ciphertext for s in moved}) == 1000


def test_every_single_bit_flip_fails(ring):
    sealed = b.seal_secret(ring, 1, CTX, FIELD, "pw!")
    assert b.open_secret(ring, CTX, FIELD, sealed) == "pw!"
    for bit in range(len(sealed.ciphertext) * 8):
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_ciphertext(sealed, flip(sealed.ciphertext, bit)))


def test_truncated_blobs_fail(ring):
    sealed = b.seal_secret(ring, 1, CTX, FIELD, "x" * 32)
    assert len(sealed.ciphertext) > 40
    for n in range(0, 41):
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_ciphertext(sealed, sealed.ciphertext[:n]))


def test_truncated_wrapped_keys_fail(ring, master, sealed):
    rk_blob = ring.new_ring_key(2)
    for n in range(0, 41):
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_wrapped_key(sealed, sealed.wrapped_data_key[:n]))
        with pytest.raises(DecryptionFailed):
            KeyRing(master).add(2, rk_blob[:n])
        assert not b.opens_ring_key(master, 2, rk_blob[:n])


def test_non_bytes_blob_fails(ring, sealed):
    for junk in [None, "abc", 123]:
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_ciphertext(sealed, junk))
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_wrapped_key(sealed, junk))


def test_memoryview_blob_accepted(ring, sealed):
    viewed = Sealed(1, memoryview(sealed.wrapped_data_key), memoryview(sealed.ciphertext))
    assert b.open_secret(ring, CTX, FIELD, viewed) == SECRET


def test_bad_version_byte_fails(ring, sealed):
    for v in (0x00, 0x02, 0xFF):
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_ciphertext(sealed, bytes([v]) + sealed.ciphertext[1:]))


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
def test_moved_field_ciphertext_fails(ring, sealed, ctx, field, version):
    ring.add(2, ring.new_ring_key(2))
    with pytest.raises(DecryptionFailed):
        b.open_secret(ring, ctx, field, Sealed(version, sealed.wrapped_data_key, sealed.ciphertext))


def test_a_field_under_another_data_key_fails(ring, sealed):
    other = b.seal_secret(ring, 1, CTX, FIELD, SECRET)
    with pytest.raises(DecryptionFailed):
        b.open_secret(ring, CTX, FIELD, with_ciphertext(sealed, other.ciphertext))


def test_decryption_failed_message_leaks_nothing(ring, sealed):
    data_key = b._unwrap_data_key(ring, 1, sealed.wrapped_data_key, CTX)  # the barrier's own test looks inside
    with pytest.raises(DecryptionFailed) as ei:
        b.open_secret(ring, CTX, "other", sealed)
    msg = str(ei.value)
    assert SECRET not in msg
    assert data_key.hex() not in msg and repr(data_key) not in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


def test_invalid_inputs_raise_barrier_error(ring):
    with pytest.raises(BarrierError):
        EntryContext("", "C100", "SYS-A")
    with pytest.raises(BarrierError):
        b.seal_secret(ring, 1, CTX, "", SECRET)
    with pytest.raises(BarrierError):
        b.seal_secret(ring, 0, CTX, FIELD, SECRET)
    with pytest.raises(BarrierError):
        b.seal_secret(ring, 1, CTX, FIELD, b"not text")
    with pytest.raises(BarrierError) as ei:
        b.seal_secret(ring, 1, CTX, FIELD, "bad \udc80 surrogate")
    assert "\udc80" not in str(ei.value) and ei.value.__suppress_context__


# ---------------------------------------------------------------- data keys


def test_data_key_roundtrip(ring, sealed):
    data_key = b._unwrap_data_key(ring, 1, sealed.wrapped_data_key, CTX)
    other = b._unwrap_data_key(ring, 1, b.seal_secret(ring, 1, CTX, FIELD, SECRET).wrapped_data_key, CTX)
    assert len(data_key) == 32 and data_key != other  # a fresh data key per seal
    assert data_key not in sealed.wrapped_data_key


@pytest.mark.parametrize(
    "ctx",
    [
        EntryContext("e-2", "C100", "SYS-A"),
        EntryContext("e-1", "C200", "SYS-A"),
        EntryContext("e-1", "C100", "SYS-B"),
    ],
)
def test_wrapped_data_key_moved_to_other_entry_fails(ring, ctx):
    sealed = b.seal_secret(ring, 1, CTX, FIELD, SECRET)
    there = b.seal_secret(ring, 1, ctx, FIELD, SECRET)
    with pytest.raises(DecryptionFailed):
        b.open_secret(ring, ctx, FIELD, with_wrapped_key(there, sealed.wrapped_data_key))


def test_wrapped_data_key_wrong_version_fails(ring, sealed):
    ring.add(2, ring.new_ring_key(2))
    with pytest.raises(DecryptionFailed):
        b.open_secret(ring, CTX, FIELD, Sealed(2, sealed.wrapped_data_key, sealed.ciphertext))


def test_wrapped_data_key_bit_flips_fail(ring, sealed):
    blob = sealed.wrapped_data_key
    for bit in range(len(blob) * 8):
        with pytest.raises(DecryptionFailed):
            b.open_secret(ring, CTX, FIELD, with_wrapped_key(sealed, flip(blob, bit)))


def test_unknown_ring_version(ring, sealed):
    with pytest.raises(BarrierError):
        b.seal_secret(ring, 7, CTX, FIELD, SECRET)
    with pytest.raises(BarrierError):
        b.open_secret(ring, CTX, FIELD, Sealed(7, sealed.wrapped_data_key, sealed.ciphertext))
    with pytest.raises(BarrierError):
        b.reseal_secret(ring, CTX, FIELD, sealed, 7)


def test_rotation_and_reseal(ring, sealed):
    ring.add(2, ring.new_ring_key(2))
    assert ring.current_version == 2 and ring.versions() == [1, 2] and 1 in ring and 3 not in ring
    # old ring key still decrypts
    assert b.open_secret(ring, CTX, FIELD, sealed) == SECRET
    moved = b.reseal_secret(ring, CTX, FIELD, sealed, 2)
    assert moved.key_version == 2 and b.open_secret(ring, CTX, FIELD, moved) == SECRET
    data_key = b._unwrap_data_key(ring, 2, moved.wrapped_data_key, CTX)
    assert data_key == b._unwrap_data_key(ring, 1, sealed.wrapped_data_key, CTX)  # the entry keeps its data key
    # the field re-encrypted under the new version; the old one is no longer valid at v2
    with pytest.raises(DecryptionFailed):
        b.open_secret(ring, CTX, FIELD, Sealed(2, moved.wrapped_data_key, sealed.ciphertext))
    assert b.open_secret(ring, CTX, FIELD, sealed) == SECRET
    with pytest.raises(DecryptionFailed):  # a damaged secret does not move
        b.reseal_secret(ring, CTX, FIELD, with_ciphertext(sealed, flip(sealed.ciphertext, 100)), 2)


# ---------------------------------------------------------------- ring keys


def test_ring_key_wrap_unwrap(master):
    rk = os.urandom(32)
    blob = b._wrap_ring_key(master, 3, rk)
    assert rk not in blob
    assert b._unwrap_ring_key(master, 3, blob) == rk
    assert b.opens_ring_key(master, 3, blob)


def test_ring_key_wrong_master_fails(master):
    blob = KeyRing(master).new_ring_key(1)
    other = b.master_key_from_bytes(os.urandom(32))
    assert not b.opens_ring_key(other, 1, blob)
    ring = KeyRing(other, {1: blob})  # lazy: constructing does not unwrap
    with pytest.raises(DecryptionFailed):
        b.seal_secret(ring, 1, CTX, FIELD, SECRET)
    with pytest.raises(DecryptionFailed):
        KeyRing(other).add(1, blob)


def test_ring_key_wrong_version_fails(master):
    blob = KeyRing(master).new_ring_key(1)
    assert not b.opens_ring_key(master, 2, blob)
    with pytest.raises(DecryptionFailed):
        KeyRing(master).add(2, blob)


def test_rewrap_ring_key_moves_a_ring_key_to_another_master_key(master):
    new = b.master_key_from_bytes(os.urandom(32))
    blob = KeyRing(master).new_ring_key(1)
    sealed = b.seal_secret(KeyRing(master, {1: blob}), 1, CTX, FIELD, SECRET)
    moved = b.rewrap_ring_key(master, new, 1, blob)
    assert moved != blob and b.opens_ring_key(new, 1, moved) and not b.opens_ring_key(master, 1, moved)
    assert b.open_secret(KeyRing(new, {1: moved}), CTX, FIELD, sealed) == SECRET  # the same ring key
    with pytest.raises(DecryptionFailed):
        b.rewrap_ring_key(new, master, 1, blob)  # `new` does not open it
    with pytest.raises(DecryptionFailed):
        b.rewrap_ring_key(master, new, 2, blob)  # bound to version 1


def test_keyring_lazy_load_from_storage(master):
    r1 = KeyRing(master)
    stored = {}
    for v in (1, 2):
        stored[v] = r1.new_ring_key(v)
        r1.add(v, stored[v])
    sealed = b.seal_secret(r1, 2, CTX, FIELD, SECRET)
    r2 = KeyRing(master, stored)
    assert r2.current_version == 2 and len(r2) == 2
    assert b.open_secret(r2, CTX, FIELD, sealed) == SECRET


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
        ring.add(2, KeyRing(master).new_ring_key(2))


def test_the_usage_limit_stays_below_the_aes_gcm_bound():
    assert b.DEFAULT_USAGE_LIMIT < b.USAGE_BOUND == 2**32


# ---------------------------------------------------------------- repr / pickling


def test_repr_hides_key_bytes(master, ring):
    raw = os.urandom(32)
    mk = b.master_key_from_bytes(raw)
    sealer = b.LogSealer(mk)
    for obj in (mk, ring, sealer):
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


# --- the barrier is the only code that sees a plaintext key ------------------------------------------------------
SERVICES = Path(__file__).resolve().parents[2] / "services"
BARRIER = SERVICES / "depot" / "barrier.py"
# what holds a plaintext key in the barrier's objects (MasterKey, KeyRing, LogSealer)
KEY_ATTRIBUTES = {"_key", "_keys", "_master"}
# symmetric encryption and key derivation: the barrier's tools (a password hash, authz's scrypt, is no key use)
KEY_MODULES = ("cryptography.hazmat.primitives.ciphers", "cryptography.hazmat.primitives.kdf.hkdf",
               "cryptography.hazmat.primitives.kdf.concatkdf", "cryptography.hazmat.primitives.kdf.kbkdf",
               "cryptography.hazmat.primitives.hmac", "cryptography.hazmat.primitives.cmac", "cryptography.fernet")
KEY_NAMES = {"AESGCM", "AESGCMSIV", "AESCCM", "AESOCB3", "AESSIV", "ChaCha20Poly1305", "Cipher", "HKDF",
             "HKDFExpand", "Fernet"}
HMAC_WITHOUT_KEY = {"compare_digest"}  # the only use of the hmac module that holds no key


def key_uses(path: Path) -> list[str]:
    """Every place in a module that touches a barrier object's key or uses a key primitive."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(SERVICES.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in KEY_ATTRIBUTES:
            found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hmac" \
                and node.attr not in HMAC_WITHOUT_KEY:
            found.append(f"{where}: hmac.{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.startswith(KEY_MODULES) or names & KEY_NAMES or (module == "hmac" and names - HMAC_WITHOUT_KEY):
                found.append(f"{where}: from {module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(KEY_MODULES):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.Name) and node.id in KEY_NAMES:
            found.append(f"{where}: {node.id}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "barrier" \
                and node.attr.startswith("_"):
            found.append(f"{where}: barrier.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "services.depot.barrier" \
                and any(alias.name.startswith("_") for alias in node.names):
            found.append(f"{where}: a private name of the barrier")
    return found


def test_only_the_barrier_sees_a_plaintext_key():
    modules = sorted(p for p in SERVICES.rglob("*.py") if p != BARRIER)
    assert len(modules) > 20 and SERVICES / "depot" / "keyring.py" in modules
    assert key_uses(BARRIER), "the scan finds nothing even in the barrier: it is broken"
    assert [use for path in modules for use in key_uses(path)] == []


# what makes, encodes or decodes a key's bytes: randomness and base64 (the depot's other modules need neither)
KEY_BYTES_MODULES = {"base64", "binascii", "secrets"}
KEY_BYTES_OS = {"urandom", "getrandom"}


def key_bytes_handling(source: str, where: str) -> list[str]:
    """Every place in a module's source that generates random bytes or base64-encodes or decodes bytes."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        at = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{at}: import {a.name}" for a in node.names if a.name.split(".")[0] in KEY_BYTES_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            names = {alias.name for alias in node.names}
            if module in KEY_BYTES_MODULES or (module == "os" and names & KEY_BYTES_OS):
                found.append(f"{at}: from {node.module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Attribute) and node.attr in KEY_BYTES_OS:
            found.append(f"{at}: .{node.attr}")
    return found


def test_only_the_barrier_makes_encodes_or_decodes_a_key_in_the_depot():
    modules = sorted(p for p in (SERVICES / "depot").rglob("*.py") if p != BARRIER)
    assert SERVICES / "depot" / "masterkeyfile.py" in modules
    assert key_bytes_handling(BARRIER.read_text(), "barrier.py"), "the scan finds nothing even in the barrier"
    # what masterkeyfile.py did before the barrier parsed and generated its master keys
    assert len(key_bytes_handling("import base64, binascii\nraw = base64.b64decode(b64, validate=True)\n"
                                  "raw = os.urandom(KEY_SIZE)\nfrom secrets import token_bytes\n", "old")) == 4
    assert [use for path in modules
            for use in key_bytes_handling(path.read_text(), str(path.relative_to(SERVICES.parent)))] == []


def test_a_generated_dev_master_key_is_read_back_from_its_file_contents():
    key, contents = b.new_dev_master_key()
    assert key.is_dev and key.generated and contents.startswith(b"rsdev1:") and contents.endswith(b"\n")
    again = b.master_key_from_file(contents)
    assert again.key_id == key.key_id and again.is_dev and not again.generated
    assert b.new_dev_master_key()[0].key_id != key.key_id
    raw = os.urandom(32)
    line = b"rsmk1:" + base64.b64encode(raw) + b"\n"
    assert not b.master_key_from_file(line).is_dev and b.master_key_from_file(line).key_id == \
        b.master_key_from_bytes(raw).key_id
    for malformed in (b"", b"rsmk1", b"rsmk1:!!\n", line + line, b"rsmk2:" + line[6:], "rsmk1:x"):
        with pytest.raises(b.MasterKeyFileMalformed):
            b.master_key_from_file(malformed)
    with pytest.raises(MasterKeyError) as short:
        b.master_key_from_file(b"rsmk1:" + base64.b64encode(raw[:16]))
    assert not isinstance(short.value, b.MasterKeyFileMalformed)


# what the barrier offers: blobs, plaintext secrets and opaque key objects in and out, never a plaintext key
PUBLIC = {
    "BarrierError", "DecryptionFailed", "MasterKeyError", "MasterKeyFileMalformed",  # errors
    "KEY_SIZE", "BLOB_VERSION", "NONCE_SIZE", "TAG_SIZE", "USAGE_BOUND", "DEFAULT_USAGE_LIMIT",  # figures
    "MasterKey", "master_key_from_bytes",  # raw bytes in (e.g. from a KMS), an opaque key out
    "master_key_from_file",  # a key file's contents in, an opaque key out
    "new_dev_master_key",  # a generated dev key out, opaque, with the contents of its file (to be written once)
    "KeyRing",  # wrapped ring keys in and out (new_ring_key, add)
    "EntryContext", "Sealed", "seal_secret", "open_secret", "reseal_secret",  # secrets in, blobs out; and back
    "opens_ring_key", "rewrap_ring_key",  # wrapped ring keys in, a verdict or a wrapped ring key out
    "LogSealer",  # a head in, its seal out
    "WebhookSecrets",  # a delivery in, its signature out; an endpoint's secret out once, for its registrant to keep
}


def test_the_barrier_offers_no_operation_on_plaintext_keys():
    assert set(b.__all__) == PUBLIC
    defined = {name for name, value in vars(b).items() if not name.startswith("_")
               and getattr(value, "__module__", b.__name__) == b.__name__ and (callable(value) or name.isupper())}
    assert defined <= PUBLIC, defined - PUBLIC


def test_a_webhook_secret_is_derived_and_its_signature_checks_as_a_receiver_checks_it():
    from tests.webhook_signature import SignatureInvalid, verify
    master, _ = b.new_dev_master_key()
    secrets_ = b.WebhookSecrets(master)
    nonce = b.WebhookSecrets.new_nonce()
    secret = secrets_.secret("1234", "hook1", nonce)
    assert secret.startswith("whsec_") and len(secret) == 49
    assert secrets_.secret("1234", "hook1", nonce) == secret  # the same again: nothing needs storing
    others = {secrets_.secret("1234", "hook1", b.WebhookSecrets.new_nonce()), secrets_.secret("12345", "hook1", nonce),
              secrets_.secret("1234", "hook2", nonce), b.WebhookSecrets(b.new_dev_master_key()[0]).secret(
                  "1234", "hook1", nonce)}
    assert secret not in others and len(others) == 4
    header = secrets_.signature("1234", "hook1", nonce, 1_700_000_000, b'{"a":1}')
    verify(secret, header, b'{"a":1}', now=1_700_000_010)
    with pytest.raises(SignatureInvalid):
        verify(secret, header, b'{"a":2}', now=1_700_000_010)
    assert "WebhookSecrets()" == repr(secrets_) and secret not in repr(secrets_)
    with pytest.raises(TypeError):
        pickle.dumps(secrets_)
