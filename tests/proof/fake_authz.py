"""A stand-in for the authz service on its port, for row 9 (and row 14): it answers every AuthzService method
the way it is told — an error status, bytes that are no CheckResponse, an incomplete bulk answer, or, slower
than the services' authz deadline, an answer that would allow everything (so a service that waited for it
would let the call in)."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc

from remotesupport.authz.v1 import authz_pb2


def _result(answer: authz_pb2.CheckResponse) -> authz_pb2.CheckResult:
    """A Check answer as one item of a CheckBulk answer (the same fields)."""
    return authz_pb2.CheckResult.FromString(answer.SerializeToString())


SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name
ALLOW = authz_pb2.CheckResponse(allowed=True, authenticated=True, reason="fake: allowed", decision_id="fake",
                                subject=authz_pb2.Subject(user="users/S0000000001",
                                                          kind=authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER,
                                                          customer="customers/1"))
MODES = {
    "INTERNAL": "answers every call with INTERNAL",
    "UNKNOWN": "raises in its handler (UNKNOWN)",
    "UNAVAILABLE": "answers UNAVAILABLE",
    "RESOURCE_EXHAUSTED": "answers RESOURCE_EXHAUSTED",
    "PERMISSION_DENIED": "refuses the service's own token",
    "garbage": "answers bytes that are no CheckResponse",
    "incomplete": "answers a bulk check with fewer results than asked, a check with an empty answer",
    "unauthenticated allow": "answers allowed=true for an unauthenticated subject",
    "no subject": "answers allowed=true without naming the subject",
    "slow": "answers allowed=true for everything, after the deadline",
}


class FakeAuthz(grpc.GenericRpcHandler):
    def __init__(self, address: str, mode: str, delay_s: float = 0.0) -> None:
        self.mode = mode
        self.delay_s = delay_s
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(64), handlers=(self,),
                                  options=[("grpc.so_reuseport", 0)])
        if self.server.add_insecure_port(address) == 0:
            raise RuntimeError(f"cannot bind {address}")

    def __enter__(self) -> "FakeAuthz":
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(0).wait()

    def service(self, details):
        if not details.method.startswith(f"/{SERVICE}/"):
            return None
        method = details.method.rsplit("/", 1)[1]

        def behave(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls += 1
            if self.mode == "slow":
                time.sleep(self.delay_s)
                return self._allow(method, request)
            if self.mode in ("INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED"):
                context.abort(getattr(grpc.StatusCode, self.mode), f"fake authz: {self.mode}")
            if self.mode == "UNKNOWN":
                raise RuntimeError("fake authz failed")
            if self.mode == "garbage":
                return b"\xff\xff\xff\xff not a message"
            if self.mode == "incomplete":
                if method == "CheckBulk":
                    items = authz_pb2.CheckBulkRequest.FromString(request).items
                    return authz_pb2.CheckBulkResponse(results=[_result(ALLOW)] * (len(items) - 1)).SerializeToString()
                return b""
            if self.mode == "no subject":
                answer = authz_pb2.CheckResponse(allowed=True, authenticated=True, reason="fake")
                if method == "CheckBulk":
                    items = authz_pb2.CheckBulkRequest.FromString(request).items
                    return authz_pb2.CheckBulkResponse(results=[_result(answer)] * len(items)).SerializeToString()
                return answer.SerializeToString()
            if self.mode == "unauthenticated allow":
                answer = authz_pb2.CheckResponse(allowed=True, authenticated=False, reason="fake")
                if method == "CheckBulk":
                    items = authz_pb2.CheckBulkRequest.FromString(request).items
                    return authz_pb2.CheckBulkResponse(results=[_result(answer)] * len(items)).SerializeToString()
                return answer.SerializeToString()
            context.abort(grpc.StatusCode.INTERNAL, "fake authz: unknown mode")

        return grpc.unary_unary_rpc_method_handler(behave)

    @staticmethod
    def _allow(method: str, request: bytes) -> bytes:
        if method == "CheckBulk":
            items = authz_pb2.CheckBulkRequest.FromString(request).items
            return authz_pb2.CheckBulkResponse(results=[_result(ALLOW)] * len(items)).SerializeToString()
        if method == "Check":
            return ALLOW.SerializeToString()
        return b""  # an empty (default) answer of any other method
