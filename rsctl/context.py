"""What a command handler gets: its arguments, the output, the session, the client, and name resolution."""
from __future__ import annotations

import argparse
import getpass
from dataclasses import dataclass, field
from typing import TextIO

from rsctl.client import Addresses, Client, Tls
from rsctl.config import TOKEN_ENV, Session, SessionStore
from rsctl.errors import CliError, not_logged_in, usage
from rsctl.names import Names
from rsctl.output import Output


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    store: SessionStore
    environ: dict[str, str]
    stdin: TextIO
    addresses: Addresses
    tls: Tls = field(default_factory=Tls)
    _client: Client | None = field(default=None, init=False)
    _session: Session | None = field(default=None, init=False)
    _session_loaded: bool = field(default=False, init=False)

    # --- session --------------------------------------------------------------------------------------
    def session(self) -> Session | None:
        """The token in RSCTL_TOKEN, else the stored session, else None."""
        if not self._session_loaded:
            if self.environ.get(TOKEN_ENV):
                self._session = Session(token=self.environ[TOKEN_ENV].strip(), adopted_from=f"${TOKEN_ENV}")
            else:
                self._session = self.store.load()  # a corrupt file raises, every time it is asked for
                if self._session is not None and self.store.loose_permissions():
                    self.out.warn(f"{self.store.path} is readable by others; run: chmod 600 {self.store.path}")
            self._session_loaded = True
        return self._session

    def use_session(self, session: Session) -> None:
        """Make the next calls use `session`'s token."""
        self._session, self._session_loaded = session, True

    def token(self) -> str:
        session = self.session()
        if session is None:
            raise not_logged_in()
        return session.token

    # --- calls ----------------------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.addresses, self.args.timeout, self.token, self.tls)
        return self._client

    def call(self, service: str, method: str, request, *, authenticated: bool = True):
        return self.client.call(service, method, request, authenticated=authenticated)

    def stream(self, service: str, method: str, request):
        return self.client.stream(service, method, request)

    def collect(self, service: str, method: str, request, items: str, limit: int | None = None) -> list:
        return self.client.collect(service, method, request, items, limit)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # --- names ----------------------------------------------------------------------------------------
    @property
    def names(self) -> Names:
        default = ""
        if self.args.customer:
            default = Names().customer(self.args.customer)
        else:
            try:
                session = self.session()
            except CliError:  # a broken session file is reported when the token is needed
                session = None
            default = session.customer if session else ""
        return Names(default)

    # --- secrets from the user ------------------------------------------------------------------------
    def read_secret(self, what: str, from_stdin: bool, *, flag: str, confirm: bool = False) -> str:
        """A password or secret: the first line of stdin (`from_stdin`), else a prompt without echo."""
        if from_stdin:
            value = self.stdin.readline().rstrip("\r\n")
            if not value:
                raise usage(f"no {what} on standard input")
            return value
        if not self.stdin.isatty():
            raise usage(f"no terminal to ask for the {what}; pipe it in with {flag}")
        try:
            value = getpass.getpass(f"{what.capitalize()}: ")
            if confirm and getpass.getpass(f"{what.capitalize()} (again): ") != value:
                raise usage(f"the two {what}s differ")
        except EOFError:
            raise usage(f"no {what} entered") from None
        if not value:
            raise usage(f"empty {what}")
        return value
