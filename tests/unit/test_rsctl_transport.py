"""rsctl's calls on the wire: the bearer token and request id it sends, plaintext and TLS, against a tiny
gRPC server answering one method (no service of the suite is needed for this)."""
from __future__ import annotations

import io
import json
from concurrent import futures

import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2
from remotesupport.depot.v1 import depot_pb2
from rsctl.cli import main
from services.kit import certs

ANSWERS = {
    "/remotesupport.connections.v1.ConnectionsService/ListConnectionTypes": (
        connections_pb2.ListConnectionTypesRequest,
        connections_pb2.ListConnectionTypesResponse(connection_types=[
            connections_pb2.ConnectionType(name="connectionTypes/SSH", code="SSH", display_name="SSH Connection")])),
    "/remotesupport.depot.v1.LogonDepotService/VerifyLog": (
        depot_pb2.VerifyLogRequest,
        depot_pb2.VerifyLogResponse(valid=False, events_checked=3, first_broken_sequence=2,
                                    problem="event 2 was edited")),
    "/remotesupport.connections.v1.ConnectionsService/VerifyServiceConnector": (
        connections_pb2.VerifyServiceConnectorRequest,
        connections_pb2.VerifyServiceConnectorResponse(valid=False, problem="the signature does not verify")),
}


class Recorder(grpc.GenericRpcHandler):
    """Answers a few methods with canned responses and records the metadata of every call."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def service(self, details):
        if details.method not in ANSWERS:
            return None
        self.metadata.append(dict(details.invocation_metadata))
        request_type, response = ANSWERS[details.method]
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: response, request_deserializer=request_type.FromString,
            response_serializer=type(response).SerializeToString)


@pytest.fixture
def server(request):
    """(port, recorder, ca pem path or None); TLS when the test is parametrized with tls=True."""
    tls_dir = getattr(request, "param", None)
    recorder = Recorder()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[recorder])
    ca_path = None
    if tls_dir:
        tmp = request.getfixturevalue("tmp_path")
        ca, ca_key = certs.make_ca("test CA")
        leaf, key = certs.issue(ca, ca_key, "gateway", dns=("localhost",))
        ca_path = tmp / "ca.pem"
        ca_path.write_bytes(certs.cert_pem(ca))
        port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(certs.key_pem(key), certs.cert_pem(leaf))]))
    else:
        port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield port, recorder, ca_path
    srv.stop(0)


def rsctl(*argv, token="rs_test_token"):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(), stdout=out, stderr=err, environ={"RSCTL_TOKEN": token})
    return code, out.getvalue(), err.getvalue()


def test_plaintext_call_sends_the_bearer_token_and_a_request_id(server):
    port, recorder, _ = server
    code, out, err = rsctl("--address", f"127.0.0.1:{port}", "types", "list", "--json")
    assert code == 0, err
    assert json.loads(out)["connection_types"][0]["code"] == "SSH"
    sent = recorder.metadata[0]
    assert sent["authorization"] == "Bearer rs_test_token"
    assert sent["x-request-id"].startswith("rsctl-")


@pytest.mark.parametrize("server", [True], indirect=True)
def test_tls_call_verifies_the_server_with_the_given_ca(server):
    port, recorder, ca_path = server
    code, out, err = rsctl("--address", f"127.0.0.1:{port}", "--ca-file", str(ca_path), "types", "list")
    assert code == 0, err
    assert out.splitlines()[1].startswith("SSH ")
    assert recorder.metadata[0]["authorization"] == "Bearer rs_test_token"
    code, _, err = rsctl("--address", f"127.0.0.1:{port}", "types", "list", "--timeout", "3")  # plaintext to TLS
    assert code == 7 and err.startswith("rsctl: UNAVAILABLE: cannot reach")


def test_integrity_failures_exit_8(server, tmp_path):
    port, _, _ = server
    code, out, _ = rsctl("--address", f"127.0.0.1:{port}", "log", "verify", "1234")
    assert code == 8 and "BROKEN at event 2" in out and "event 2 was edited" in out
    forged = tmp_path / "stfk.oez"
    forged.write_bytes(b"STFK1\n")
    code, out, _ = rsctl("--address", f"127.0.0.1:{port}", "connector", "verify", str(forged), "--json")
    assert code == 8 and json.loads(out)["valid"] is False
