"""What an evidence document is made of: the whole of each message the gateway puts in it (gateway/evidence.py
converts them field by field). Each field was read and holds no secret; a field added to one of these messages
reaches every document exported from then on, so it fails this test until someone has checked it and added it
here (docs/EVIDENCE.md: "The document holds no secret")."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb

REVIEWED = {
    cpb.Incident: ["name", "system", "title", "description", "priority", "status", "processor", "reporter",
                   "create_time", "update_time", "etag"],
    cpb.Connection: ["name", "connection_type", "state", "start_time", "end_time", "incident", "reason", "opener",
                     "create_time", "closer", "close_time"],
    cpb.Session: ["name", "connection", "connection_type", "principal", "incident", "target", "state", "start_time",
                  "end_time", "bytes_to_target", "bytes_from_target", "end_reason", "refusal_reason", "detail",
                  "relay", "terminated_by"],
    dpb.LogEvent: ["name", "sequence", "action", "outcome", "actor", "system", "logon_data", "incident", "detail",
                   "event_time", "hash", "previous_hash", "request_id"],
    dpb.VerifyLogResponse: ["valid", "events_checked", "first_broken_sequence", "problem", "head"],
    dpb.LogHead: ["sequence", "hash"],
}
HARMLESS_TYPES = {"google.protobuf.Timestamp", "remotesupport.depot.v1.LogHead"}


def test_every_field_of_what_a_document_holds_was_reviewed():
    for message, fields in REVIEWED.items():
        got = [f.name for f in message.DESCRIPTOR.fields]
        assert got == fields, (f"{message.DESCRIPTOR.full_name} has fields {sorted(set(got) - set(fields))} that "
                               "reach evidence documents: check they hold no secret, then add them to REVIEWED")
        for f in message.DESCRIPTOR.fields:
            if f.message_type is not None:
                assert f.message_type.full_name in HARMLESS_TYPES, (message.DESCRIPTOR.full_name, f.name)

