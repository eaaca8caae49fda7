"""keys status|rotate: the depot's key ring (platform admin; never shows key material)."""
from __future__ import annotations

from remotesupport.depot.v1 import depot_pb2
from rsctl.output import col

COLUMNS = [col("version"), col("state"), col("create_time", "created"), col("entry_count", "entries"),
           col("encryptions")]


def register(reg) -> None:
    group = reg.group("keys", "the depot's key ring (platform admin)")
    group.command("status", status, "show the ring key versions")
    group.command("rotate", rotate, "add a ring key; entries are re-wrapped in the background")


def status(ctx) -> None:
    response = ctx.call("depot", "GetKeyStatus", depot_pb2.GetKeyStatusRequest())
    if ctx.out.json_mode:
        ctx.out.resource(response)
        return
    ctx.out.line(f"active version {response.active_version}, master key {response.master_key_id}")
    ctx.out.listing("versions", list(response.versions), COLUMNS)


def rotate(ctx) -> None:
    ctx.out.resource(ctx.call("depot", "RotateKey", depot_pb2.RotateKeyRequest()).key)
