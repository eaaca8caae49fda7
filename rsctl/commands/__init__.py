"""The command groups of rsctl, one module each; every module has `register(registrar)`."""
from __future__ import annotations

import argparse
from typing import Callable

Handler = Callable[..., "int | None"]


class Registrar:
    """Adds commands to the top-level parser; every leaf command also accepts the global options."""

    def __init__(self, subparsers, common: argparse.ArgumentParser, formatter) -> None:
        self.subparsers = subparsers
        self.common = common
        self.formatter = formatter

    def _leaf(self, subparsers, name: str, handler: Handler, help_text: str, aliases=(), epilog=None):
        parser = subparsers.add_parser(name, help=help_text, description=help_text, aliases=list(aliases),
                                       parents=[self.common], formatter_class=self.formatter, epilog=epilog)
        parser.set_defaults(handler=handler)
        return parser

    def command(self, name: str, handler: Handler, help_text: str, *, aliases=(), epilog=None):
        """A top-level command: `rsctl NAME ...`."""
        return self._leaf(self.subparsers, name, handler, help_text, aliases, epilog)

    def group(self, name: str, help_text: str, *, aliases=()) -> "Group":
        """A command group: `rsctl NAME ACTION ...`."""
        parser = self.subparsers.add_parser(name, help=help_text, description=help_text, aliases=list(aliases),
                                            formatter_class=self.formatter)
        return Group(self, parser.add_subparsers(dest="action", metavar="ACTION", required=True))


class Group:
    def __init__(self, registrar: Registrar, subparsers) -> None:
        self.registrar = registrar
        self.subparsers = subparsers

    def command(self, name: str, handler: Handler, help_text: str, *, aliases=(), epilog=None):
        return self.registrar._leaf(self.subparsers, name, handler, help_text, aliases, epilog)


def modules():
    from rsctl.commands import (access, auth, connector, customers, events, evidence, incidents, keys, log, logon,
                                notifications, session, sessions, setups, systems, tunnel, types, users, views,
                                webhooks, windows)
    return [session, customers, users, auth, systems, types, setups, windows, connector, tunnel, sessions, incidents,
            logon, views, log, keys, access, events, notifications, webhooks, evidence]
