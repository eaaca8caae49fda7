"""RemoteSupportService: the composite flows (their policies are in policies.py)."""
from __future__ import annotations

from gateway.backends import Backends
from gateway.end_access import end_remote_access
from gateway.events import MergedFeed
from gateway.evidence import EvidenceExport
from gateway.overview import system_overview
from gateway.prepare import prepare_remote_access
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit import auth


class RemoteSupportServicer(gateway_pb2_grpc.RemoteSupportServiceServicer):
    def __init__(self, backends: Backends, events: MergedFeed, evidence: EvidenceExport) -> None:
        self.b = backends
        self.events = events
        self.evidence = evidence

    async def PrepareRemoteAccess(self, request, context):
        return await prepare_remote_access(self.b, request, auth.current().subject.user)

    async def EndRemoteAccess(self, request, context):
        return await end_remote_access(self.b, request)

    async def GetSystemOverview(self, request, context):
        return await system_overview(self.b, request)

    async def WatchEvents(self, request, context):
        await self.events.serve(request, context)

    async def ExportIncidentEvidence(self, request, context):
        return await self.evidence.export(request, auth.current().subject.user)

    async def GetEvidenceKey(self, request, context):
        return self.evidence.key()
