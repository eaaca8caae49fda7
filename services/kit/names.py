"""Resource names (AIP-122): parse, build and validate, with INVALID_ARGUMENT naming the field."""
from __future__ import annotations

import re

from services.kit.errors import InvalidArgument

CUSTOMER_NUMBER = r"[0-9]{1,10}"
SYSTEM_NUMBER = r"[0-9]{1,18}"
RESOURCE_ID = r"[a-z0-9][a-z0-9-]{0,62}"
USER_ID = r"(?:S[0-9]{10}|[a-z][a-z0-9._-]{1,62})"
TYPE_CODE = r"[A-Z][A-Z0-9_]{0,39}"

_TEMPLATES = {
    "customer": rf"customers/(?P<customer>{CUSTOMER_NUMBER})",
    "user": rf"users/(?P<user>{USER_ID})",
    "notification_settings": rf"users/(?P<user>{USER_ID})/notificationSettings",
    "system": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})",
    "logon_data": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})"
    rf"/logonData/(?P<logon_data>{RESOURCE_ID})",
    "restricted_view": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})"
    rf"/restrictedViews/(?P<incident>{RESOURCE_ID})",
    "connection_setup": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})"
    rf"/connectionSetups/(?P<code>{TYPE_CODE})",
    "connection": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})"
    rf"/connections/(?P<connection>{RESOURCE_ID})",
    "session": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/systems/(?P<system>{SYSTEM_NUMBER})"
    rf"/sessions/(?P<session>{RESOURCE_ID})",
    "connection_type": rf"connectionTypes/(?P<code>{TYPE_CODE})",
    "incident": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/incidents/(?P<incident>{RESOURCE_ID})",
    "webhook": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/webhooks/(?P<webhook>{RESOURCE_ID})",
    "webhook_delivery": rf"customers/(?P<customer>{CUSTOMER_NUMBER})/webhooks/(?P<webhook>{RESOURCE_ID})"
    rf"/deliveries/(?P<delivery>{RESOURCE_ID})",
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in _TEMPLATES.items()}  # used with fullmatch: whole strings
_EXAMPLES = {
    "customer": "customers/{customer_number}",
    "user": "users/{user_id}",
    "notification_settings": "users/{user_id}/notificationSettings",
    "system": "customers/{c}/systems/{system_number}",
    "logon_data": "customers/{c}/systems/{s}/logonData/{id}",
    "restricted_view": "customers/{c}/systems/{s}/restrictedViews/{incident_id}",
    "connection_setup": "customers/{c}/systems/{s}/connectionSetups/{CODE}",
    "connection": "customers/{c}/systems/{s}/connections/{id}",
    "session": "customers/{c}/systems/{s}/sessions/{id}",
    "connection_type": "connectionTypes/{CODE}",
    "incident": "customers/{c}/incidents/{id}",
    "webhook": "customers/{c}/webhooks/{id}",
    "webhook_delivery": "customers/{c}/webhooks/{w}/deliveries/{id}",
}


def parse(kind: str, value: str, field: str) -> dict[str, str]:
    """Parse a resource name of `kind` or raise INVALID_ARGUMENT naming `field`."""
    if not value:
        raise InvalidArgument(field, f"is required ({_EXAMPLES[kind]})")
    match = _COMPILED[kind].fullmatch(value) if len(value) <= 300 else None
    if match is None:
        raise InvalidArgument(field, f"must look like {_EXAMPLES[kind]}")
    return match.groupdict()


def parse_optional(kind: str, value: str, field: str) -> dict[str, str] | None:
    return parse(kind, value, field) if value else None


def customer(number: str) -> str:
    return f"customers/{number}"


def system(customer_number: str, system_number: str) -> str:
    return f"customers/{customer_number}/systems/{system_number}"


def user(user_id: str) -> str:
    return f"users/{user_id}"


def parent_system(name_parts: dict[str, str]) -> str:
    return system(name_parts["customer"], name_parts["system"])
