"""webhooks create|list|get|delete|deliveries|redeliver: the customer's endpoints that receive its events as
signed POSTs (user administrators of the customer; docs/WEBHOOKS.md)."""
from __future__ import annotations

from remotesupport.common.v1 import events_pb2
from remotesupport.depot.v1 import depot_pb2
from rsctl.args import EnumArg
from rsctl.output import col

TYPE = EnumArg(events_pb2.EventType)
STATE = EnumArg(depot_pb2.WebhookDeliveryState)
COLUMNS = [col("name"), col("url"), ("types", lambda w: ",".join(
    events_pb2.EventType.Name(t).removeprefix("EVENT_TYPE_") for t in w.event_types)), col("creator")]
DELIVERY_COLUMNS = [col("name"), col("event_id", "event"), col("state"), col("attempts"),
                    col("last_attempt_time", "last try"), col("last_error", "error")]


def register(reg) -> None:
    group = reg.group("webhooks", "the customer's webhook endpoints and their deliveries (user administrators)")
    p = group.command("create", create, "register an endpoint for events of the given types; prints its signing "
                                        "secret, this once")
    p.add_argument("url", metavar="URL", help="https://... (http only to a loopback address outside production)")
    p.add_argument("--type", dest="types", type=TYPE, action="append", required=True, metavar="TYPE",
                   help=f"an event type to deliver (repeatable); one of: {TYPE.choices_text}")
    p.add_argument("--description", default="")
    p = group.command("list", list_, "list the customer's endpoints")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    group.command("get", get, "show an endpoint (never its secret)").add_argument("webhook", metavar="WEBHOOK")
    group.command("delete", delete, "remove an endpoint and its deliveries").add_argument("webhook", metavar="WEBHOOK")
    p = group.command("deliveries", deliveries, "list an endpoint's deliveries, newest first")
    p.add_argument("webhook", metavar="WEBHOOK")
    p.add_argument("--state", type=STATE, default=0, help=f"one of: {STATE.choices_text}")
    group.command("redeliver", redeliver, "send a failed (or delivered) delivery again from its first try"
                  ).add_argument("delivery", metavar="DELIVERY")


def create(ctx) -> None:
    request = depot_pb2.CreateWebhookRequest(parent=ctx.names.customer(""), webhook=depot_pb2.Webhook(
        url=ctx.args.url, event_types=ctx.args.types, description=ctx.args.description))
    response = ctx.call("depot", "CreateWebhook", request)
    if ctx.out.json_mode:
        ctx.out.document({"name": response.webhook.name, "secret": response.secret})
        return
    ctx.out.resource(response.webhook)
    ctx.out.line(f"Signing secret (shown this once; keep it where the receiver checks signatures): {response.secret}")


def list_(ctx) -> None:
    request = depot_pb2.ListWebhooksRequest(parent=ctx.names.customer(ctx.args.customer_arg))
    ctx.out.listing("webhooks", ctx.collect("depot", "ListWebhooks", request, "webhooks"), COLUMNS)


def get(ctx) -> None:
    name = _webhook(ctx, ctx.args.webhook)
    ctx.out.resource(ctx.call("depot", "GetWebhook", depot_pb2.GetWebhookRequest(name=name)).webhook)


def delete(ctx) -> None:
    name = _webhook(ctx, ctx.args.webhook)
    ctx.call("depot", "DeleteWebhook", depot_pb2.DeleteWebhookRequest(name=name))
    if ctx.out.json_mode:
        ctx.out.document({"deleted": name})
    else:
        ctx.out.line(f"Deleted {name}.")


def deliveries(ctx) -> None:
    request = depot_pb2.ListWebhookDeliveriesRequest(parent=_webhook(ctx, ctx.args.webhook), state=ctx.args.state)
    ctx.out.listing("deliveries", ctx.collect("depot", "ListWebhookDeliveries", request, "deliveries"),
                    DELIVERY_COLUMNS)


def redeliver(ctx) -> None:
    request = depot_pb2.RedeliverWebhookDeliveryRequest(name=ctx.args.delivery)
    ctx.out.resource(ctx.call("depot", "RedeliverWebhookDelivery", request).delivery)


def _webhook(ctx, value: str) -> str:
    """A webhook's name, or its id in the default customer."""
    return value if value.startswith("customers/") else f"{ctx.names.customer('')}/webhooks/{value}"
