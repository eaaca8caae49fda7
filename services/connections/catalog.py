"""The catalog of service connection types: the 33 types of the seed's "Connection Types" table.

Pure data plus two helpers (`by_code`, `validate_parameters`); no I/O, stdlib only.

Names, descriptions and SAP Notes are transcribed from the seed verbatim, in its order, with one repair:
the seed's row "Secure AS/400 Connection servers Enables OS Access for secure AS/400 based  2016103" has the
last word of its description ("servers") displaced behind the name (a table-wrapping artifact; compare
"AS/400-5250 Connection ... for AS/400 based servers"). The name is "Secure AS/400 Connection" and the
description "Enables OS Access for secure AS/400 based servers"; the stray no-break space + space before
the note is dropped. No word is added or lost.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

# --- parameter kinds -------------------------------------------------------------------------------

STRING = "STRING"
HOST = "HOST"
PORT = "PORT"
URL = "URL"
INSTANCE_NUMBER = "INSTANCE_NUMBER"
DATABASE = "DATABASE"

PARAMETER_KINDS: tuple[str, ...] = (STRING, HOST, PORT, URL, INSTANCE_NUMBER, DATABASE)

MAX_VALUE_LENGTH = 255

# --- categories (the five headings of the seed's table, in its order) ------------------------------

SAP_GUI = "SAP_GUI"
SOLUTION_MANAGER = "SOLUTION_MANAGER"
JAVA_HTTP = "JAVA_HTTP"
APPLICATION_SHARING_OS = "APPLICATION_SHARING_OS"
FURTHER = "FURTHER"

CATEGORIES: tuple[str, ...] = (SAP_GUI, SOLUTION_MANAGER, JAVA_HTTP, APPLICATION_SHARING_OS, FURTHER)

CATEGORY_TITLES: dict[str, str] = {
    SAP_GUI: "SAP GUI based connection",
    SOLUTION_MANAGER: "Connection to SAP Solution Manager",
    JAVA_HTTP: "Java / http-based connection types that enable / ease service connection to java based systems",
    APPLICATION_SHARING_OS: (
        "Connection types providing application sharing methods or access on OS-level (operating system)"
    ),
    FURTHER: "Further connection types",
}

# --- maximum opening durations ---------------------------------------------------------------------
# Two tiers, chosen by how much the access bypasses the target system's own logon and authorizations:
# * APPLICATION_ACCESS_HOURS (14 days): access through the application (SAP GUI, HTTP/Java UIs,
#   Solution Manager, TREX/BIA, PI repositories). The engineer still logs on with a user the customer
#   controls and is confined to its authorizations; incident analysis often spans days.
# * PRIVILEGED_ACCESS_HOURS (3 days): access below the application: OS shells and desktop sharing,
#   direct database connections, debuggers, load tests, installation/upgrade tools (run with OS
#   administrator rights). Short windows limit exposure; the customer can simply open it again.

APPLICATION_ACCESS_HOURS = 24 * 14
PRIVILEGED_ACCESS_HOURS = 24 * 3

CODE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*")
CODE_MAX_LENGTH = 40


@dataclass(frozen=True)
class ParameterSpec:
    """One set-up parameter of a connection type (e.g. the application server host)."""

    key: str
    display_name: str
    kind: str
    required: bool
    description: str

    def __post_init__(self) -> None:
        if self.kind not in PARAMETER_KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")


@dataclass(frozen=True)
class ConnectionTypeSpec:
    """One service connection type of the catalog.

    `default_port` is the standard port where one exists; for types addressed by instance number it is the
    port of instance 00 (e.g. 3200 = sapdp00), the actual port follows the instance number.
    """

    code: str
    display_name: str
    category: str
    description: str
    sap_note: str
    parameters: tuple[ParameterSpec, ...]
    default_port: int | None
    max_open_hours: int

    def __post_init__(self) -> None:
        if len(self.code) > CODE_MAX_LENGTH or not CODE_PATTERN.fullmatch(self.code):
            raise ValueError(f"invalid connection type code {self.code!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        if self.default_port is not None and not 1 <= self.default_port <= 65535:
            raise ValueError(f"invalid default port {self.default_port!r}")
        if self.max_open_hours <= 0:
            raise ValueError("max_open_hours must be positive")
        keys = [p.key for p in self.parameters]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate parameter key in {self.code}")


# --- parameter building blocks ---------------------------------------------------------------------


def _host(
    display_name: str = "Host", description: str = "Host name or IP address of the target server"
) -> ParameterSpec:
    return ParameterSpec("host", display_name, HOST, True, description)


def _app_server() -> ParameterSpec:
    return _host("Application server", "Host name or IP address of the SAP application server")


def _instance_number() -> ParameterSpec:
    return ParameterSpec(
        "instance_number", "Instance number", INSTANCE_NUMBER, True, "Two-digit SAP instance number (00-99)"
    )


def _port(required: bool) -> ParameterSpec:
    suffix = "" if required else "; the type's standard port if omitted"
    return ParameterSpec("port", "Port", PORT, required, "TCP port of the target service (1-65535)" + suffix)


def _url(description: str = "Start URL of the application (http:// or https://)") -> ParameterSpec:
    return ParameterSpec("url", "URL", URL, True, description)


def _snc_name() -> ParameterSpec:
    return ParameterSpec(
        "snc_name", "SNC name", STRING, True, "SNC name of the target system, e.g. p:CN=PRD, O=Example, C=DE"
    )


def _database(required: bool, display_name: str = "Database", description: str = "Database name") -> ParameterSpec:
    return ParameterSpec("database", display_name, DATABASE, required, description)


def _host_port(default_port: int | None) -> tuple[ParameterSpec, ...]:
    """Host and port; the port is optional exactly when the type has a standard port."""
    return (_host(), _port(required=default_port is None))


def _sap_gui() -> tuple[ParameterSpec, ...]:
    return (_app_server(), _instance_number())


def _db(default_port: int | None, database: ParameterSpec) -> tuple[ParameterSpec, ...]:
    return (_host("Database host", "Host name or IP address of the database server"),
            _port(required=default_port is None), database)


def _type(
    code: str,
    display_name: str,
    category: str,
    description: str,
    sap_note: str,
    parameters: tuple[ParameterSpec, ...],
    default_port: int | None,
    max_open_hours: int,
) -> ConnectionTypeSpec:
    return ConnectionTypeSpec(
        code, display_name, category, description, sap_note, parameters, default_port, max_open_hours
    )


_APP = APPLICATION_ACCESS_HOURS
_PRIV = PRIVILEGED_ACCESS_HOURS

CONNECTION_TYPES: tuple[ConnectionTypeSpec, ...] = (
    # SAP GUI based connection
    _type("R3_SUPPORT", "R/3 Support", SAP_GUI,
          "Enables remote access to an SAP system via SAP GUI", "812732",
          _sap_gui(), 3200, _APP),
    _type("R3_SUPPORT_SNC_SSO", "R/3 Support with SNC/SSO", SAP_GUI,
          "Enables remote access to an SAP system via SAPGUI with SSO", "",
          _sap_gui() + (_snc_name(),), 3200, _APP),
    _type("SAPGUI_BROWSER", "SAPGui+Browser Connect", SAP_GUI,
          "Enables remote access to an SAP system via SAP GUI and browser", "1721448",
          _sap_gui() + (_url(),), 3200, _APP),
    _type("SAP_NI", "SAP NI Connection", SAP_GUI,
          "Enables remote access to an SAP system via any client using SAP NI as protocol", "1718597",
          _sap_gui() + (ParameterSpec("port", "Port", PORT, False,
                                      "TCP port of the NI service (1-65535); the dispatcher port 32NN if omitted"),),
          3200, _APP),
    # Connection to SAP Solution Manager
    _type("SOLUTION_MANAGER", "SAP Solution Manager", SOLUTION_MANAGER,
          "Provides access to the solution graphic in SAP Solution Manager", "962516",
          _sap_gui(), 3200, _APP),
    _type("SOLUTION_MANAGER_DIAGNOSTICS", "Solution Manager Diagnostics", SOLUTION_MANAGER,
          "Enables system related access to SAP Solution Manager Diagnostics", "962516",
          (_url(),), 443, _APP),
    # Java / http-based connection types
    _type("NW_MOBILE_JAVA_APPS", "NW Mobile Java Apps", JAVA_HTTP,
          "Enables a connection to a SAP Netweaver Data Orchestration Engine", "1613402",
          (_url(),), 443, _APP),
    _type("HTTP_CONNECT_URL", "HTTP Connect - URL access", JAVA_HTTP,
          "Provides access to http-based applications via Web browser", "592085",
          (_url(),), 443, _APP),
    _type("HTTP_CONNECT_SNC_SSO", "HTTP Connect w. SNC/SSO", JAVA_HTTP,
          "Provides access to http-based applications via Web browser with SSO", "",
          (_url(), _snc_name()), 443, _APP),
    _type("HTTP_TOOLS", "HTTP-based Tools", JAVA_HTTP,
          "Enables http-based access through client tools using http protocol", "1787981",
          (_url("Base URL the client tools connect to (http:// or https://)"),), 443, _APP),
    _type("SAP_BUSINESS_CLIENT", "SAP Business Client", JAVA_HTTP,
          "Enables a web-based connection via SAP Business Client", "",
          (_url(),), 443, _APP),
    _type("LOADRUNNER_TEST", "LoadRunner-Test", JAVA_HTTP,
          "Enables remote load testing", "850213",
          _host_port(None), None, _PRIV),
    _type("JAVA_DEBUG", "JAVA DEBUG", JAVA_HTTP,
          "Enables remote debugging of java based applications", "545519",
          _host_port(None), None, _PRIV),
    _type("SAP_JVM_TOOLS", "SAP JVM Tools", JAVA_HTTP,
          "Enables debugging of JVM Tools", "2038631",
          _host_port(None), None, _PRIV),
    # Application sharing / OS-level access
    _type("GOTOASSIST", "GoToAssist", APPLICATION_SHARING_OS,
          "Enables desktop sharing and remote support via LogMeIn", "2016077",
          (), None, _PRIV),  # the session is started from the customer's desktop: nothing to set up
    _type("WTS", "Windows Terminal Server", APPLICATION_SHARING_OS,
          "Enables application sharing access via Windows Terminal Server", "605795",
          _host_port(3389), 3389, _PRIV),
    _type("WTS_NLA", "WTS Connect with NLA", APPLICATION_SHARING_OS,
          "Enables application sharing access via Windows Terminal Server with NLA Support", "1912318",
          _host_port(3389), 3389, _PRIV),
    _type("CITRIX_METAFRAME", "Citrix Metaframe", APPLICATION_SHARING_OS,
          "Enables application sharing access via Citrix Metaframe", "701588",
          _host_port(1494), 1494, _PRIV),
    _type("AS400_5250", "AS/400-5250 Connection", APPLICATION_SHARING_OS,
          "Enables OS access for AS/400 based servers", "79411",
          _host_port(23), 23, _PRIV),  # 5250 over telnet
    _type("SECURE_AS400", "Secure AS/400 Connection", APPLICATION_SHARING_OS,
          "Enables OS Access for secure AS/400 based servers", "2016103",
          _host_port(992), 992, _PRIV),  # 5250 over telnet/TLS
    _type("TELNET", "Telnet Connection", APPLICATION_SHARING_OS,
          "Enables OS access via Telnet", "37001",
          _host_port(23), 23, _PRIV),
    _type("SSH", "SSH Connection", APPLICATION_SHARING_OS,
          "Enables SSH connection to customer systems", "1275351",
          _host_port(22), 22, _PRIV),
    _type("VNC", "VNC Connection", APPLICATION_SHARING_OS,
          "Enables VNC connection to customer systems", "1327257",
          _host_port(5900), 5900, _PRIV),
    # Further connection types
    _type("JDBC_ODBC", "JDBC/ODBC Connection", FURTHER,
          "Enables remote access to a Database using JDBC, ODBC and native connections", "1718601",
          _db(None, _database(True)), None, _PRIV),
    _type("HANA", "SAP HANA database", FURTHER,
          "Enables a remote connection to a SAP HANA database", "1592925",
          _db(30015, _database(False, description="Database name (SID); optional for a single-container system")),
          30015, _PRIV),  # 3NN15, instance 00
    _type("HANA_MDC", "SAP HANA MDC", FURTHER,
          "Enables a remote connection to a Multi Database Container HANA database. (Multi-tenant)", "2280051",
          _db(30013, _database(True, "Tenant database", "Name of the tenant database")),
          30013, _PRIV),  # 3NN13: system database, routes to tenants; instance 00
    _type("UPGRADE_ASSISTANT", "Upgrade Assistant", FURTHER,
          "Enables the remote usage of Upgrade Assistant", "125971",
          _host_port(None), None, _PRIV),
    _type("SAPINST_GUI", "SAPInst-GUI", FURTHER,
          "Enables the remote usage of SAPInst-GUI", "707848",
          _host_port(21212), 21212, _PRIV),  # SAPinst GUI server port
    _type("SAP_DB", "SAP-DB Connection", FURTHER,
          "Enables a remote connection to an SAP-DB", "202344",
          _db(7210, _database(True)), 7210, _PRIV),  # MaxDB X Server
    _type("TREX_BIA", "TREX/BIA", FURTHER,
          "Enables access to TREX or BI accelerator system", "1058533",
          (_host("TREX host", "Host name or IP address of the TREX / BIA server"), _instance_number()),
          30001, _APP),  # 3NN01 name server, instance 00
    _type("INTEGRATION_REPOSITORY", "Integration Repository", FURTHER,
          "Enables a connection to the Integration Repository", "800267",
          (_url(),), 443, _APP),
    _type("INTEGRATION_DIRECTORY", "Integration Directory", FURTHER,
          "Enables a connection to Integration Directory", "800267",
          (_url(),), 443, _APP),
    _type("WINDOWS_REMOTE_DEBUG", "Windows Remote Debug", FURTHER,
          "Enables remote debugging for Windows-based applications", "1884079",
          _host_port(None), None, _PRIV),
)

_BY_CODE: dict[str, ConnectionTypeSpec] = {t.code: t for t in CONNECTION_TYPES}
if len(_BY_CODE) != len(CONNECTION_TYPES):  # pragma: no cover - guards the table above
    raise RuntimeError("duplicate connection type code")


def by_code(code: str) -> ConnectionTypeSpec | None:
    """The connection type with this code, or None."""
    return _BY_CODE.get(code)


# --- parameter validation --------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT_DIGITS = re.compile(r"[0-9]{1,5}")
_INSTANCE_NUMBER = re.compile(r"[0-9]{2}")
_DATABASE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    """RFC 1123 host name; a name whose last label is all digits would be a malformed IPv4 address."""
    if len(value) > 253:
        return False
    labels = value.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def is_valid_host(value: str) -> bool:
    """True for a host name, an IPv4 or an IPv6 address (without brackets)."""
    return _is_ip_address(value) or _is_hostname(value)


def _port_problem(value: str) -> str | None:
    if not _PORT_DIGITS.fullmatch(value) or not 1 <= int(value) <= 65535:
        return "must be a port number between 1 and 65535"
    return None


def _url_problem(value: str) -> str | None:
    message = "must be an http:// or https:// URL with a valid host"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # raises ValueError when out of range or not numeric
    except ValueError:
        return message
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in value:
        return message
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (store logon data in the logon depot)"
    host = parts.hostname or ""
    if not is_valid_host(host):
        return message
    if port == 0:
        return message
    return None


def _kind_problem(kind: str, value: str) -> str | None:
    if kind == HOST:
        return None if is_valid_host(value) else "must be a valid host name, IPv4 or IPv6 address"
    if kind == PORT:
        return _port_problem(value)
    if kind == INSTANCE_NUMBER:
        return None if _INSTANCE_NUMBER.fullmatch(value) else "must be a two-digit instance number (00-99)"
    if kind == URL:
        return _url_problem(value)
    if kind == DATABASE:
        if _DATABASE_NAME.fullmatch(value):
            return None
        return "must start with a letter and contain only letters, digits and underscores (at most 64)"
    return None  # STRING: any text within the general limits


def _value_problem(parameter: ParameterSpec, value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if value == "":
        return "is required" if parameter.required else None
    if len(value) > MAX_VALUE_LENGTH:
        return f"must be at most {MAX_VALUE_LENGTH} characters"
    if _CONTROL_CHARS.search(value):
        return "must not contain control characters"
    return _kind_problem(parameter.kind, value)


def validate_parameters(spec: ConnectionTypeSpec, params: dict[str, str]) -> list[tuple[str, str]]:
    """Problems with a set-up's parameters as (parameter key, problem); an empty list means valid.

    Declared parameters are checked in the type's order (at most one problem each: missing, too long,
    control characters, or not of its kind; an empty optional value counts as absent), then unknown keys
    in sorted order.
    """
    problems: list[tuple[str, str]] = []
    for parameter in spec.parameters:
        if parameter.key not in params:
            if parameter.required:
                problems.append((parameter.key, "is required"))
            continue
        problem = _value_problem(parameter, params[parameter.key])
        if problem is not None:
            problems.append((parameter.key, problem))
    known = {parameter.key for parameter in spec.parameters}
    for key in sorted((k for k in params if k not in known), key=str):
        problems.append((key, f"is not a parameter of connection type {spec.code}"))
    return problems
