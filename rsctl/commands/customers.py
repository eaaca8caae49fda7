"""customers create: register a customer number (platform admin)."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2


def register(reg) -> None:
    group = reg.group("customers", "customer numbers (platform admin)")
    p = group.command("create", create, "register a customer number")
    p.add_argument("number", metavar="NUMBER", help="1 to 10 digits")
    p.add_argument("display_name", metavar="NAME", help="the customer's name")


def create(ctx) -> None:
    customer = authz_pb2.Customer(customer_number=ctx.args.number.removeprefix("customers/"),
                                  display_name=ctx.args.display_name)
    response = ctx.call("authz", "CreateCustomer", authz_pb2.CreateCustomerRequest(customer=customer))
    ctx.out.resource(response.customer)
