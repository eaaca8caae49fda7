"""`rsctl evidence verify FILE --key PEM`, offline: what an intact document says (exit 0), and why a tampered
one, one of another key, or a file that is no evidence document fails (exit 8) — with no server to ask (the
address points nowhere and nobody is logged in)."""
from __future__ import annotations

import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rsctl.cli import main
from services.kit import evidence

EVIDENCE = {"format": evidence.FORMAT, "exported_at": "2026-12-08T10:00:00Z", "exported_by": "users/S0000000001",
            "incident": {"name": "customers/1/incidents/abc", "system": "customers/1/systems/2"},
            "windows": [{"name": "w1"}, {"name": "w2"}], "sessions": [{"name": "s1"}],
            "log_events": [{"sequence": "6"}, {"sequence": "7"}, {"sequence": "9"}],
            "log_verification": {"valid": True, "events_checked": "9", "first_broken_sequence": "0", "problem": "",
                                 "head": {"sequence": "9", "hash": "ab" * 32}}}
OFFLINE = {"RSCTL_ADDRESS": "127.0.0.1:1"}  # nothing listens there: a call would fail with exit 7


def run(*argv: str, config_dir) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(""), stdout=out, stderr=err,
                environ={**OFFLINE, "RSCTL_CONFIG_DIR": str(config_dir)})
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path):
    signer = evidence.EvidenceSigner(Ed25519PrivateKey.generate())
    other = evidence.EvidenceSigner(Ed25519PrivateKey.generate())
    (tmp_path / "key.pem").write_text(signer.public_key_pem)
    (tmp_path / "other.pem").write_text(other.public_key_pem)
    document = signer.sign(EVIDENCE)
    (tmp_path / "evidence.json").write_bytes(document)
    changed = bytearray(document)
    changed[document.index(b"incidents/abc") + 10] ^= 0x01  # abc -> abb
    (tmp_path / "tampered.json").write_bytes(bytes(changed))
    return tmp_path, signer, other


def test_an_intact_document_verifies_offline_and_says_what_it_holds(files):
    d, signer, _ = files
    code, out, err = run("evidence", "verify", str(d / "evidence.json"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{d / 'evidence.json'}: valid, signed with key {signer.key_id}"
    fields = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert fields == {"incident": "customers/1/incidents/abc", "system": "customers/1/systems/2",
                      "exported_at": "2026-12-08T10:00:00Z", "exported_by": "users/S0000000001", "windows": "2",
                      "sessions": "1", "log_events": "3", "log_verified": "True", "log_head": "9:" + "ab" * 32}
    assert err == ""
    code, out, _ = run("evidence", "verify", str(d / "evidence.json"), "--key", str(d / "key.pem"), "--json",
                       config_dir=d)
    doc = json.loads(out)
    assert code == 0 and doc["valid"] is True and doc["log_events"] == 3 and doc["incident"].endswith("/abc")


def test_a_tampered_document_fails_with_exit_8(files):
    d, signer, _ = files
    code, out, err = run("evidence", "verify", str(d / "tampered.json"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 8
    assert out == (f"{d / 'tampered.json'}: NOT VALID: the signature does not match key {signer.key_id}: the "
                   "document was altered after it was signed\n")
    code, out, _ = run("evidence", "verify", str(d / "tampered.json"), "--key", str(d / "key.pem"), "--json",
                       config_dir=d)
    assert code == 8 and json.loads(out)["valid"] is False and "altered" in json.loads(out)["problem"]


def test_another_key_fails_with_exit_8_naming_both_keys(files):
    d, signer, other = files
    code, out, _ = run("evidence", "verify", str(d / "evidence.json"), "--key", str(d / "other.pem"), config_dir=d)
    assert code == 8
    assert f"NOT VALID: the document was signed with another key: key {signer.key_id}, not key {other.key_id}" in out


def test_a_file_that_is_no_evidence_document_fails_with_exit_8(files):
    d, _, _ = files
    (d / "log.csv").write_text("sequence,event_time\n1,2026-12-08T10:00:00Z\n")
    code, out, _ = run("evidence", "verify", str(d / "log.csv"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 8 and "NOT VALID: not an evidence document: not UTF-8 JSON" in out
    (d / "other.json").write_text('{"evidence": {"format": "something else"}, "signature": {}}')
    code, out, _ = run("evidence", "verify", str(d / "other.json"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 8 and 'NOT VALID: not an evidence document: "signature" must hold' in out


def test_a_document_exported_when_the_log_did_not_verify_is_authentic_but_warned_of(files):
    d, signer, _ = files
    broken = {**EVIDENCE, "log_verification": {"valid": False, "events_checked": "9", "first_broken_sequence": "4",
                                                "problem": "event 4 was edited"}}
    (d / "broken.json").write_bytes(signer.sign(broken))
    code, out, err = run("evidence", "verify", str(d / "broken.json"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 0 and "log_verified: False" in out
    assert err == "rsctl: warning: the depot's log did NOT verify when the document was exported: event 4 was edited\n"


def test_missing_or_wrong_files_are_errors(files):
    d, _, _ = files
    code, _, err = run("evidence", "verify", str(d / "nope.json"), "--key", str(d / "key.pem"), config_dir=d)
    assert code == 1 and err.startswith(f"rsctl: error: cannot read the evidence document {d / 'nope.json'}: ")
    code, _, err = run("evidence", "verify", str(d / "evidence.json"), "--key", str(d / "nope.pem"), config_dir=d)
    assert code == 1 and err.startswith(f"rsctl: error: cannot read the public key {d / 'nope.pem'}: ")
    code, _, err = run("evidence", "verify", str(d / "evidence.json"), "--key", str(d / "evidence.json"),
                       config_dir=d)
    assert code == 1 and err == f"rsctl: error: {d / 'evidence.json'} is not a PEM public key\n"
    code, _, err = run("evidence", "verify", str(d / "evidence.json"), config_dir=d)
    assert code == 2 and "--key" in err
