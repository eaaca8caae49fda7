"""Where rsctl keeps its session (the bearer token and who it belongs to) and how it writes it:
one JSON file, `<config dir>/session.json`, created atomically with mode 0600."""
from __future__ import annotations

import json
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from rsctl.errors import CliError, not_logged_in
from services.kit.secretfile import write_secret_file

SESSION_FILE = "session.json"
TOKEN_ENV = "RSCTL_TOKEN"


def default_config_dir(environ: dict[str, str]) -> Path:
    """RSCTL_CONFIG_DIR, else $XDG_CONFIG_HOME/rsctl, else ~/.config/rsctl."""
    if environ.get("RSCTL_CONFIG_DIR"):
        return Path(environ["RSCTL_CONFIG_DIR"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "rsctl"


@dataclass
class Session:
    """A logged-in (or adopted) token. `token` is a secret: it is never printed."""

    token: str
    user: str = ""
    kind: str = ""
    customer: str = ""
    expire_time: str = ""
    address: str = ""
    adopted_from: str = ""

    def public(self) -> dict[str, str]:
        """Everything but the token, for display."""
        data = asdict(self)
        data.pop("token")
        return data


class SessionStore:
    """Reads, writes and forgets the session file of one config directory."""

    def __init__(self, config_dir: Path) -> None:
        self.path = Path(config_dir) / SESSION_FILE

    def save(self, session: Session) -> Path:
        write_secret_file(self.path, (json.dumps(asdict(session), indent=2) + "\n").encode())
        return self.path

    def load(self) -> Session | None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CliError("error", f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            session = Session(**{k: str(v) for k, v in data.items() if k in Session.__dataclass_fields__})
        except (ValueError, TypeError):
            raise not_logged_in(f"{self.path} is not a session file rsctl wrote; log in again") from None
        if not session.token:
            raise not_logged_in(f"{self.path} holds no token; log in again")
        return session

    def forget(self) -> bool:
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False

    def loose_permissions(self) -> bool:
        """True when the session file is readable or writable by group or others."""
        try:
            return bool(self.path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        except FileNotFoundError:
            return False


def read_token_file(path: Path) -> str:
    """The token in a file such as var/admin.token (first non-empty line)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CliError("error", f"cannot read token file {path}: {exc.strerror}") from None
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise CliError("usage", f"token file {path} is empty", 2)
    return token
