"""evidence export|key|verify: one incident's signed evidence document (the gateway's ExportIncidentEvidence;
docs/EVIDENCE.md), the public key it is signed with, and its check, which is offline: no server is asked."""
from __future__ import annotations

import os
from pathlib import Path

from remotesupport.gateway.v1 import gateway_pb2
from rsctl.connector_check import load_public_key
from rsctl.errors import DATA_LOSS, CliError
from rsctl.output import clean
from services.kit import evidence as kit_evidence
from services.kit.secretfile import write_secret_file


def register(reg) -> None:
    group = reg.group("evidence", "signed evidence of an incident: export it, get the key, verify it offline")
    p = group.command("export", export, "export an incident's signed evidence document (JSON, written with mode "
                                        "0600) and print the id of the key it is signed with")
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default ./evidence-<incident id>.json; '-': stdout)")
    p = group.command("key", key, "write the public key evidence documents are signed with (PEM)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: stdout)")
    p = group.command("verify", verify, "verify an evidence document offline with a public key; exit 8 when it "
                                        "is not intact, not an evidence document, or signed with another key")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--key", required=True, type=Path, metavar="PEM",
                   help="the public key, as 'rsctl evidence key' writes it")


def export(ctx) -> None:
    incident = ctx.names.incident(ctx.args.incident)
    response = ctx.call("gateway", "ExportIncidentEvidence",
                        gateway_pb2.ExportIncidentEvidenceRequest(incident=incident))
    if ctx.args.output == "-":  # the document's bytes as signed, whatever the terminal's encoding
        buffer = getattr(ctx.out.stdout, "buffer", None)
        if buffer is not None:
            ctx.out.stdout.flush()
            buffer.write(response.document + b"\n")
            buffer.flush()
        else:
            ctx.out.stdout.write(response.document.decode("utf-8") + "\n")
        return
    target = Path(ctx.args.output or f"evidence-{incident.rsplit('/', 1)[-1]}.json")
    _write(target, response.document)
    if ctx.out.json_mode:
        ctx.out.document({"file": str(target), "bytes": len(response.document), "key_id": response.key_id})
    else:
        ctx.out.line(f"Wrote {target} ({len(response.document)} bytes): the evidence of {incident}, signed with "
                     f"key {response.key_id}.")
        ctx.out.line("Verify it offline with: rsctl evidence verify FILE --key PEM (the key: rsctl evidence key)")


def key(ctx) -> None:
    response = ctx.call("gateway", "GetEvidenceKey", gateway_pb2.GetEvidenceKeyRequest())
    if not ctx.args.output or ctx.args.output == "-":
        ctx.out.stdout.write(response.public_key_pem)
        return
    target = Path(ctx.args.output)
    _write(target, response.public_key_pem.encode("ascii"))
    os.chmod(target, 0o644)  # it is public
    if ctx.out.json_mode:
        ctx.out.document({"file": str(target), "key_id": response.key_id})
    else:
        ctx.out.line(f"Wrote {target}: the evidence signing public key {response.key_id}.")


def _write(target: Path, data: bytes) -> None:
    try:
        write_secret_file(target, data)
    except OSError as exc:
        raise CliError("error", f"cannot write {target}: {exc.strerror}") from None


def _read(path: Path) -> bytes:
    """The document's bytes (one more than an evidence document may have, for verify to refuse it as too large)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(kit_evidence.MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise CliError("error", f"cannot read the evidence document {path}: {exc.strerror}") from None


def verify(ctx) -> int:
    """Check the document against the key given; nothing is sent anywhere."""
    a = ctx.args
    public_key = load_public_key(a.key)  # the same check as for the connector's pinned key
    document = _read(a.file)
    try:
        verified = kit_evidence.verify(document, public_key)
    except kit_evidence.EvidenceInvalid as invalid:
        if ctx.out.json_mode:
            ctx.out.document({"file": str(a.file), "valid": False, "problem": invalid.problem})
        else:
            ctx.out.line(f"{a.file}: NOT VALID: {clean(invalid.problem)}")
        return DATA_LOSS
    summary = _summary(verified)
    if ctx.out.json_mode:
        ctx.out.document({"file": str(a.file), "valid": True, **summary})
    else:
        ctx.out.line(f"{a.file}: valid, signed with key {verified.key_id}")
        for name, value in summary.items():
            ctx.out.line(f"  {name}: {clean(str(value))}")
    if not summary["log_verified"]:
        problem = _part(verified.evidence, "log_verification").get("problem", "")
        ctx.out.warn(f"the depot's log did NOT verify when the document was exported: {clean(str(problem))}")
    return 0


def _part(parent: dict, name: str) -> dict:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _summary(verified: kit_evidence.Verified) -> dict:
    """What the verified document says, for a person: the incident, when and by whom, the counts."""
    e = verified.evidence
    incident, log = _part(e, "incident"), _part(e, "log_verification")
    head = _part(log, "head")
    return {
        "incident": incident.get("name", ""),
        "system": incident.get("system", ""),
        "exported_at": e.get("exported_at", ""),
        "exported_by": e.get("exported_by", ""),
        "windows": len(e.get("windows") or []),
        "sessions": len(e.get("sessions") or []),
        "log_events": len(e.get("log_events") or []),
        "log_verified": log.get("valid") is True,
        "log_head": f"{head.get('sequence', '')}:{head.get('hash', '')}" if head else "",
    }
