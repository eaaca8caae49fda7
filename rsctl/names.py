"""Resource names from the command line. Full names (customers/1/systems/2) are always accepted and sent as
they are (the server validates them and names the field when one is wrong). Short forms are resolved against
the default customer (--customer, else the logged-in customer user's own):

  customer   1234 -> customers/1234              user        S0000000001 -> users/S0000000001
  system     2 or systems/2 -> customers/C/systems/2
  incident   7 or incidents/7 -> customers/C/incidents/7
  window     systems/2/connections/9 -> customers/C/systems/2/connections/9
  session    systems/2/sessions/ab12 -> customers/C/systems/2/sessions/ab12 (or an id after a SYSTEM)
  entry      systems/2/logonData/ab12 -> customers/C/systems/2/logonData/ab12 (or an id after a SYSTEM)
  type       r3-support or R3_SUPPORT -> connectionTypes/R3_SUPPORT
"""
from __future__ import annotations

import re

from rsctl.errors import usage

_DIGITS = re.compile(r"^[0-9]+$")


class Names:
    """Resolves short resource names against `default_customer` ("customers/C" or "")."""

    def __init__(self, default_customer: str = "") -> None:
        self.default_customer = default_customer

    def _under_customer(self, value: str, example: str) -> str:
        if not self.default_customer:
            raise usage(f"{value!r} is a short name and there is no default customer; "
                        f"give the full name ({example}) or --customer")
        return f"{self.default_customer}/{value}"

    def customer(self, value: str | None) -> str:
        if not value:
            if not self.default_customer:
                raise usage("no customer given and there is no default customer; give CUSTOMER or --customer")
            return self.default_customer
        return value if value.startswith("customers/") else f"customers/{value}"

    @staticmethod
    def user(value: str) -> str:
        return value if value.startswith("users/") else f"users/{value}"

    @staticmethod
    def connection_type(value: str) -> str:
        if value.startswith("connectionTypes/"):
            return value
        return "connectionTypes/" + re.sub(r"[\s\-]+", "_", value.strip()).upper()

    @staticmethod
    def type_code(value: str) -> str:
        return Names.connection_type(value).removeprefix("connectionTypes/")

    def system(self, value: str) -> str:
        if value.startswith("customers/"):
            return value
        if _DIGITS.match(value):
            value = f"systems/{value}"
        if value.startswith("systems/"):
            return self._under_customer(value, f"customers/{{c}}/{value}")
        return value

    def incident(self, value: str) -> str:
        if not value or value.startswith("customers/"):
            return value
        if "/" not in value:
            value = f"incidents/{value}"
        if value.startswith("incidents/"):
            return self._under_customer(value, f"customers/{{c}}/{value}")
        return value

    def child(self, value: str, collection: str, system: str | None = None) -> str:
        """A resource under a system (collection "connections", "logonData", "connectionSetups", "sessions")."""
        if value.startswith("customers/"):
            return value
        if system and "/" not in value:
            return f"{self.system(system)}/{collection}/{value}"
        if value.startswith("systems/"):
            return self._under_customer(value, f"customers/{{c}}/{value}")
        return value

    def window(self, value: str) -> str:
        return self.child(value, "connections")

    def logon(self, value: str, system: str | None = None) -> str:
        return self.child(value, "logonData", system)

    def session(self, value: str, system: str | None = None) -> str:
        return self.child(value, "sessions", system)

    @staticmethod
    def last(name: str) -> str:
        """The id at the end of a resource name."""
        return name.rsplit("/", 1)[-1]

    @staticmethod
    def customer_of(name: str) -> str:
        """"customers/C" of any name under a customer, "" otherwise."""
        parts = name.split("/")
        return "/".join(parts[:2]) if len(parts) >= 2 and parts[0] == "customers" else ""
