"""The kinds of principal (DESIGN §5), said once: derived from authz.proto's PrincipalKind, so the contract
and the code cannot disagree. Services compare `AuthContext.subject.kind` with these names."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2

_PREFIX = "PRINCIPAL_KIND_"
KIND_BY_NUMBER: dict[int, str] = {v.number: v.name.removeprefix(_PREFIX)
                                  for v in authz_pb2.PrincipalKind.DESCRIPTOR.values}
NUMBER_BY_KIND: dict[str, int] = {name: number for number, name in KIND_BY_NUMBER.items()}

CUSTOMER_USER = KIND_BY_NUMBER[authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER]
SUPPORT_ENGINEER = KIND_BY_NUMBER[authz_pb2.PRINCIPAL_KIND_SUPPORT_ENGINEER]
SERVICE_ACCOUNT = KIND_BY_NUMBER[authz_pb2.PRINCIPAL_KIND_SERVICE_ACCOUNT]
PLATFORM_ADMIN = KIND_BY_NUMBER[authz_pb2.PRINCIPAL_KIND_PLATFORM_ADMIN]
