"""LogonDepotService: each RPC's request parsed and checked, handed to its use case, and its result as the
response (policies.py says who may call what)."""
from __future__ import annotations

from typing import Callable

from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from services.depot import access, audit, convert, entries, model, reveal, views, webhooks
from services.depot.deps import Depot
from services.kit import feed, names
from services.kit.errors import InvalidArgument
from services.kit.validate import mask_paths, page_size


class DepotServicer(depot_pb2_grpc.LogonDepotServiceServicer):
    def __init__(self, depot: Depot, on_rotated: Callable[[], None], events: feed.Feed,
                 on_delivery: Callable[[], None] = lambda: None) -> None:
        self.depot = depot
        self.on_rotated = on_rotated
        self.events = events
        self.on_delivery = on_delivery  # a delivery is due now: wake the webhook worker

    async def CreateLogonData(self, request, context):
        parent = names.parse("system", request.parent, "parent")
        row = await entries.create(self.depot, parent, convert.kind_name(request.logon_data.kind),
                                   convert.entry_fields(request.logon_data), request.secret,
                                   validate_only=request.validate_only)
        return depot_pb2.CreateLogonDataResponse(logon_data=convert.logon_data_pb(row))

    async def GetLogonData(self, request, context):
        row = await entries.get(self.depot, names.parse("logon_data", request.name, "name"))
        return depot_pb2.GetLogonDataResponse(logon_data=convert.logon_data_pb(row))

    async def ListLogonData(self, request, context):
        parent = names.parse("system", request.parent, "parent")
        size = page_size(request.page_size)
        kind = convert.kind_name(request.kind)
        if kind and kind not in model.KINDS:
            raise InvalidArgument("kind", f"has unknown value {kind}")
        rows, next_token = await entries.list_entries(self.depot, parent, kind, request.page_token, size)
        return depot_pb2.ListLogonDataResponse(logon_data=[convert.logon_data_pb(r) for r in rows],
                                               next_page_token=next_token)

    async def UpdateLogonData(self, request, context):
        parts = names.parse("logon_data", request.logon_data.name, "logon_data.name")
        paths = mask_paths(request.update_mask, set(model.UPDATABLE))
        row = await entries.update(self.depot, parts, convert.entry_fields(request.logon_data), paths, request.secret,
                                   request.logon_data.etag)
        return depot_pb2.UpdateLogonDataResponse(logon_data=convert.logon_data_pb(row))

    async def DeleteLogonData(self, request, context):
        await entries.delete(self.depot, names.parse("logon_data", request.name, "name"), request.etag,
                             validate_only=request.validate_only)
        return depot_pb2.DeleteLogonDataResponse()

    async def RevealLogonData(self, request, context):
        revealed = await reveal.reveal(self.depot, names.parse("logon_data", request.name, "name"), request.reason)
        return depot_pb2.RevealLogonDataResponse(name=access.name_of(revealed.row), user_name=revealed.row.user_name,
                                                 secret=revealed.secret, log_event=revealed.log_event)

    async def SetRestrictedView(self, request, context):
        parts = names.parse("restricted_view", request.restricted_view.name, "restricted_view.name")
        view = await views.set_view(self.depot, parts, list(request.restricted_view.logon_data))
        return depot_pb2.SetRestrictedViewResponse(restricted_view=convert.view_pb(view))

    async def GetRestrictedView(self, request, context):
        view = await views.get_view(self.depot, names.parse("restricted_view", request.name, "name"))
        return depot_pb2.GetRestrictedViewResponse(restricted_view=convert.view_pb(view))

    async def ListLogEvents(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        filters = convert.log_filters(request, customer)
        rows, next_token = await audit.list_events(self.depot.store, customer, filters, request.page_token,
                                                   page_size(request.page_size))
        return depot_pb2.ListLogEventsResponse(events=[convert.event_pb(r) for r in rows],
                                               next_page_token=next_token)

    async def VerifyLog(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        verdict = await audit.verify(self.depot.store, self.depot.sealer, customer, convert.kept_head(request))
        return convert.verdict_pb(verdict)

    async def WatchEvents(self, request, context):
        await self.events.serve(request, context)

    async def RotateKey(self, request, context):
        status = await self.depot.keys.rotate(self.depot.store, self.depot.clock.now())
        self.on_rotated()  # re-wrapping starts in the background
        return depot_pb2.RotateKeyResponse(key=convert.key_pb(status))

    async def GetKeyStatus(self, request, context):
        statuses, active = await self.depot.keys.status(self.depot.store)
        return depot_pb2.GetKeyStatusResponse(versions=[convert.key_pb(s) for s in statuses], active_version=active,
                                              master_key_id=self.depot.keys.master_key_id)

    # --- webhooks ---------------------------------------------------------------------------------------------
    async def CreateWebhook(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        hook = request.webhook
        row, secret = await webhooks.create(self.depot, customer, hook.url, list(hook.event_types), hook.description,
                                            access.caller().user)
        return depot_pb2.CreateWebhookResponse(webhook=convert.webhook_pb(row), secret=secret)

    async def GetWebhook(self, request, context):
        parts = names.parse("webhook", request.name, "name")
        row = await webhooks.get(self.depot, parts["customer"], parts["webhook"])
        return depot_pb2.GetWebhookResponse(webhook=convert.webhook_pb(row))

    async def ListWebhooks(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        rows, token = await webhooks.list_webhooks(self.depot, customer, page_size(request.page_size),
                                                   request.page_token)
        return depot_pb2.ListWebhooksResponse(webhooks=[convert.webhook_pb(r) for r in rows], next_page_token=token)

    async def DeleteWebhook(self, request, context):
        parts = names.parse("webhook", request.name, "name")
        await webhooks.delete_webhook(self.depot, parts["customer"], parts["webhook"], access.caller().user)
        return depot_pb2.DeleteWebhookResponse()

    async def ListWebhookDeliveries(self, request, context):
        parts = names.parse("webhook", request.parent, "parent")
        rows, token = await webhooks.list_deliveries(self.depot, parts["customer"], parts["webhook"],
                                                     convert.delivery_state(request.state),
                                                     page_size(request.page_size), request.page_token)
        return depot_pb2.ListWebhookDeliveriesResponse(deliveries=[convert.delivery_pb(r) for r in rows],
                                                       next_page_token=token)

    async def RedeliverWebhookDelivery(self, request, context):
        parts = names.parse("webhook_delivery", request.name, "name")
        row = await webhooks.redeliver(self.depot, parts["customer"], parts["webhook"], parts["delivery"],
                                       access.caller().user)
        self.on_delivery()
        return depot_pb2.RedeliverWebhookDeliveryResponse(delivery=convert.delivery_pb(row))
