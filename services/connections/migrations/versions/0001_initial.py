"""Initial schema, with the connection-type catalog as reference data.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

The catalog is frozen here, as literal data: CONNECTION_TYPES is what every database migrated to this revision
holds in `connection_types`, and the service reads its catalog from that table. This file never changes: a
database migrated already would not see the change. A later change to the catalog (a type added, a description
corrected, another port) is a new migration that updates `connection_types`.

Names, descriptions and SAP Notes are the seed's "Connection Types" table verbatim, in its order
(tests/fixtures/seed_connection_types.tsv), with one repair: the seed prints the row "Secure AS/400 Connection
servers | Enables OS Access for secure AS/400 based" - the last word of the description displaced behind the
name (a table-wrapping artifact; compare "AS/400-5250 Connection ... for AS/400 based servers"). The name is
"Secure AS/400 Connection" and the description "Enables OS Access for secure AS/400 based servers".

`default_port` is the standard port where one exists; for types addressed by instance number it is the port of
instance 00 (e.g. 3200 = sapdp00): the actual port follows the instance number.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)

# The longest time frame a window may have, in two tiers chosen by how much the access bypasses the target
# system's own logon and authorizations:
# * application access (14 days): through the application (SAP GUI, HTTP/Java UIs, Solution Manager, TREX/BIA,
#   PI repositories). The engineer still logs on with a user the customer controls and is confined to its
#   authorizations; incident analysis often spans days.
# * privileged access (3 days): below the application: OS shells and desktop sharing, direct database
#   connections, debuggers, load tests, installation/upgrade tools (run with OS administrator rights). Short
#   windows limit exposure; the customer can simply open it again.
APPLICATION_ACCESS_HOURS = 24 * 14
PRIVILEGED_ACCESS_HOURS = 24 * 3

# A set-up parameter: (key, display name, kind, required, description); those several types share.
APP_SERVER = ("host", "Application server", "HOST", True, "Host name or IP address of the SAP application server")
INSTANCE_NUMBER = ("instance_number", "Instance number", "INSTANCE_NUMBER", True,
                   "Two-digit SAP instance number (00-99)")
SNC_NAME = ("snc_name", "SNC name", "STRING", True, "SNC name of the target system, e.g. p:CN=PRD, O=Example, C=DE")
URL = ("url", "URL", "URL", True, "Start URL of the application (http:// or https://)")
HOST = ("host", "Host", "HOST", True, "Host name or IP address of the target server")
PORT = ("port", "Port", "PORT", True, "TCP port of the target service (1-65535)")
PORT_OR_STANDARD = ("port", "Port", "PORT", False,
                    "TCP port of the target service (1-65535); the type's standard port if omitted")
DATABASE_HOST = ("host", "Database host", "HOST", True, "Host name or IP address of the database server")
DATABASE = ("database", "Database", "DATABASE", True, "Database name")

# The catalog in the seed's order (a row's position is its place here):
# (code, display name, category, SAP Note, default port, maximum opening in hours, description, parameters)
CONNECTION_TYPES = (
    # SAP GUI based connection
    ("R3_SUPPORT", "R/3 Support", "SAP_GUI", "812732", 3200, APPLICATION_ACCESS_HOURS,
     "Enables remote access to an SAP system via SAP GUI",
     (APP_SERVER, INSTANCE_NUMBER)),
    ("R3_SUPPORT_SNC_SSO", "R/3 Support with SNC/SSO", "SAP_GUI", "", 3200, APPLICATION_ACCESS_HOURS,
     "Enables remote access to an SAP system via SAPGUI with SSO",
     (APP_SERVER, INSTANCE_NUMBER, SNC_NAME)),
    ("SAPGUI_BROWSER", "SAPGui+Browser Connect", "SAP_GUI", "1721448", 3200, APPLICATION_ACCESS_HOURS,
     "Enables remote access to an SAP system via SAP GUI and browser",
     (APP_SERVER, INSTANCE_NUMBER, URL)),
    ("SAP_NI", "SAP NI Connection", "SAP_GUI", "1718597", 3200, APPLICATION_ACCESS_HOURS,
     "Enables remote access to an SAP system via any client using SAP NI as protocol",
     (APP_SERVER, INSTANCE_NUMBER,
      ("port", "Port", "PORT", False, "TCP port of the NI service (1-65535); the dispatcher port 32NN if omitted"))),
    # Connection to SAP Solution Manager
    ("SOLUTION_MANAGER", "SAP Solution Manager", "SOLUTION_MANAGER", "962516", 3200, APPLICATION_ACCESS_HOURS,
     "Provides access to the solution graphic in SAP Solution Manager",
     (APP_SERVER, INSTANCE_NUMBER)),
    ("SOLUTION_MANAGER_DIAGNOSTICS", "Solution Manager Diagnostics", "SOLUTION_MANAGER", "962516", 443,
     APPLICATION_ACCESS_HOURS,
     "Enables system related access to SAP Solution Manager Diagnostics",
     (URL,)),
    # Java / http-based connection types that enable / ease service connection to java based systems
    ("NW_MOBILE_JAVA_APPS", "NW Mobile Java Apps", "JAVA_HTTP", "1613402", 443, APPLICATION_ACCESS_HOURS,
     "Enables a connection to a SAP Netweaver Data Orchestration Engine",
     (URL,)),
    ("HTTP_CONNECT_URL", "HTTP Connect - URL access", "JAVA_HTTP", "592085", 443, APPLICATION_ACCESS_HOURS,
     "Provides access to http-based applications via Web browser",
     (URL,)),
    ("HTTP_CONNECT_SNC_SSO", "HTTP Connect w. SNC/SSO", "JAVA_HTTP", "", 443, APPLICATION_ACCESS_HOURS,
     "Provides access to http-based applications via Web browser with SSO",
     (URL, SNC_NAME)),
    ("HTTP_TOOLS", "HTTP-based Tools", "JAVA_HTTP", "1787981", 443, APPLICATION_ACCESS_HOURS,
     "Enables http-based access through client tools using http protocol",
     (("url", "URL", "URL", True, "Base URL the client tools connect to (http:// or https://)"),)),
    ("SAP_BUSINESS_CLIENT", "SAP Business Client", "JAVA_HTTP", "", 443, APPLICATION_ACCESS_HOURS,
     "Enables a web-based connection via SAP Business Client",
     (URL,)),
    ("LOADRUNNER_TEST", "LoadRunner-Test", "JAVA_HTTP", "850213", None, PRIVILEGED_ACCESS_HOURS,
     "Enables remote load testing",
     (HOST, PORT)),
    ("JAVA_DEBUG", "JAVA DEBUG", "JAVA_HTTP", "545519", None, PRIVILEGED_ACCESS_HOURS,
     "Enables remote debugging of java based applications",
     (HOST, PORT)),
    ("SAP_JVM_TOOLS", "SAP JVM Tools", "JAVA_HTTP", "2038631", None, PRIVILEGED_ACCESS_HOURS,
     "Enables debugging of JVM Tools",
     (HOST, PORT)),
    # Connection types providing application sharing methods or access on OS-level (operating system)
    ("GOTOASSIST", "GoToAssist", "APPLICATION_SHARING_OS", "2016077", None, PRIVILEGED_ACCESS_HOURS,
     "Enables desktop sharing and remote support via LogMeIn",
     ()),  # the session is started from the customer's desktop: nothing to set up
    ("WTS", "Windows Terminal Server", "APPLICATION_SHARING_OS", "605795", 3389, PRIVILEGED_ACCESS_HOURS,
     "Enables application sharing access via Windows Terminal Server",
     (HOST, PORT_OR_STANDARD)),
    ("WTS_NLA", "WTS Connect with NLA", "APPLICATION_SHARING_OS", "1912318", 3389, PRIVILEGED_ACCESS_HOURS,
     "Enables application sharing access via Windows Terminal Server with NLA Support",
     (HOST, PORT_OR_STANDARD)),
    ("CITRIX_METAFRAME", "Citrix Metaframe", "APPLICATION_SHARING_OS", "701588", 1494, PRIVILEGED_ACCESS_HOURS,
     "Enables application sharing access via Citrix Metaframe",
     (HOST, PORT_OR_STANDARD)),
    ("AS400_5250", "AS/400-5250 Connection", "APPLICATION_SHARING_OS", "79411", 23, PRIVILEGED_ACCESS_HOURS,
     "Enables OS access for AS/400 based servers",
     (HOST, PORT_OR_STANDARD)),  # 5250 over telnet
    ("SECURE_AS400", "Secure AS/400 Connection", "APPLICATION_SHARING_OS", "2016103", 992, PRIVILEGED_ACCESS_HOURS,
     "Enables OS Access for secure AS/400 based servers",
     (HOST, PORT_OR_STANDARD)),  # 5250 over telnet/TLS
    ("TELNET", "Telnet Connection", "APPLICATION_SHARING_OS", "37001", 23, PRIVILEGED_ACCESS_HOURS,
     "Enables OS access via Telnet",
     (HOST, PORT_OR_STANDARD)),
    ("SSH", "SSH Connection", "APPLICATION_SHARING_OS", "1275351", 22, PRIVILEGED_ACCESS_HOURS,
     "Enables SSH connection to customer systems",
     (HOST, PORT_OR_STANDARD)),
    ("VNC", "VNC Connection", "APPLICATION_SHARING_OS", "1327257", 5900, PRIVILEGED_ACCESS_HOURS,
     "Enables VNC connection to customer systems",
     (HOST, PORT_OR_STANDARD)),
    # Further connection types
    ("JDBC_ODBC", "JDBC/ODBC Connection", "FURTHER", "1718601", None, PRIVILEGED_ACCESS_HOURS,
     "Enables remote access to a Database using JDBC, ODBC and native connections",
     (DATABASE_HOST, PORT, DATABASE)),
    ("HANA", "SAP HANA database", "FURTHER", "1592925", 30015, PRIVILEGED_ACCESS_HOURS,
     "Enables a remote connection to a SAP HANA database",  # port 3NN15, instance 00
     (DATABASE_HOST, PORT_OR_STANDARD,
      ("database", "Database", "DATABASE", False, "Database name (SID); optional for a single-container system"))),
    ("HANA_MDC", "SAP HANA MDC", "FURTHER", "2280051", 30013, PRIVILEGED_ACCESS_HOURS,  # port 3NN13: system database
     "Enables a remote connection to a Multi Database Container HANA database. (Multi-tenant)",
     (DATABASE_HOST, PORT_OR_STANDARD,
      ("database", "Tenant database", "DATABASE", True, "Name of the tenant database"))),
    ("UPGRADE_ASSISTANT", "Upgrade Assistant", "FURTHER", "125971", None, PRIVILEGED_ACCESS_HOURS,
     "Enables the remote usage of Upgrade Assistant",
     (HOST, PORT)),
    ("SAPINST_GUI", "SAPInst-GUI", "FURTHER", "707848", 21212, PRIVILEGED_ACCESS_HOURS,
     "Enables the remote usage of SAPInst-GUI",
     (HOST, PORT_OR_STANDARD)),  # the SAPinst GUI server port
    ("SAP_DB", "SAP-DB Connection", "FURTHER", "202344", 7210, PRIVILEGED_ACCESS_HOURS,
     "Enables a remote connection to an SAP-DB",
     (DATABASE_HOST, PORT_OR_STANDARD, DATABASE)),  # MaxDB X Server
    ("TREX_BIA", "TREX/BIA", "FURTHER", "1058533", 30001, APPLICATION_ACCESS_HOURS,
     "Enables access to TREX or BI accelerator system",  # port 3NN01: the name server, instance 00
     (("host", "TREX host", "HOST", True, "Host name or IP address of the TREX / BIA server"), INSTANCE_NUMBER)),
    ("INTEGRATION_REPOSITORY", "Integration Repository", "FURTHER", "800267", 443, APPLICATION_ACCESS_HOURS,
     "Enables a connection to the Integration Repository",
     (URL,)),
    ("INTEGRATION_DIRECTORY", "Integration Directory", "FURTHER", "800267", 443, APPLICATION_ACCESS_HOURS,
     "Enables a connection to Integration Directory",
     (URL,)),
    ("WINDOWS_REMOTE_DEBUG", "Windows Remote Debug", "FURTHER", "1884079", None, PRIVILEGED_ACCESS_HOURS,
     "Enables remote debugging for Windows-based applications",
     (HOST, PORT)),
)
_PARAMETER_FIELDS = ("key", "display_name", "kind", "required", "description")


def catalog_rows() -> list[dict]:
    """CONNECTION_TYPES as rows of `connection_types` (parameters as their JSON list)."""
    return [
        {"code": code, "position": position, "display_name": display_name, "category": category,
         "description": description, "sap_note": sap_note,
         "parameters": json.dumps([dict(zip(_PARAMETER_FIELDS, parameter)) for parameter in parameters]),
         "default_port": default_port, "max_open_hours": max_open_hours}
        for position, (code, display_name, category, sap_note, default_port, max_open_hours, description,
                       parameters) in enumerate(CONNECTION_TYPES, start=1)
    ]


def upgrade() -> None:
    connection_types = op.create_table(
        "connection_types",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("sap_note", sa.String(length=10), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("default_port", sa.Integer(), nullable=True),
        sa.Column("max_open_hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_connection_types")),
        sa.UniqueConstraint("position", name=op.f("uq_connection_types_position")),
    )
    op.bulk_insert(connection_types, catalog_rows())

    op.create_table(
        "systems",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("installation_number", sa.String(length=10), nullable=False),
        sa.Column("system_id", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("product", sa.String(length=100), nullable=False),
        sa.Column("saprouter_route", sa.String(length=255), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_systems")),
        sa.UniqueConstraint("customer", "system_number", name="uq_systems_customer_system_number"),
        sa.UniqueConstraint("customer", "installation_number", "system_id",
                            name="uq_systems_customer_installation_sid"),
    )

    op.create_table(
        "connection_setups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("system_pk", sa.Integer(), nullable=False),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("updater", sa.String(length=80), nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["system_pk"], ["systems.id"], name=op.f("fk_connection_setups_system_pk_systems"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["type_code"], ["connection_types.code"],
                                name=op.f("fk_connection_setups_type_code_connection_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_setups")),
        sa.UniqueConstraint("system_pk", "type_code", name="uq_connection_setups_system_type"),
    )

    op.create_table(
        "connection_windows",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=False),
        sa.Column("end_time", TIMESTAMP, nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("opener", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("closer", sa.String(length=80), nullable=True),
        sa.Column("close_time", TIMESTAMP, nullable=True),
        sa.Column("closed_by_sweep", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["type_code"], ["connection_types.code"],
                                name=op.f("fk_connection_windows_type_code_connection_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_windows")),
    )
    op.create_index("ix_connection_windows_system_type_end", "connection_windows",
                    ["customer", "system_number", "type_code", "end_time"])
    op.create_index("ix_connection_windows_unrecorded", "connection_windows", ["close_time", "end_time"])

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("processor", sa.String(length=80), nullable=True),
        sa.Column("reporter", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_customer_created", "incidents", ["customer", "create_time"])
    op.create_index("ix_incidents_customer_system", "incidents", ["customer", "system_number"])

    op.create_table(
        "assignment_checks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_checks")),
    )
    op.create_index(op.f("ix_assignment_checks_incident_id"), "assignment_checks", ["incident_id"])
    op.create_index(op.f("ix_assignment_checks_create_time"), "assignment_checks", ["create_time"])


def downgrade() -> None:
    op.drop_table("assignment_checks")
    op.drop_table("incidents")
    op.drop_table("connection_windows")
    op.drop_table("connection_setups")
    op.drop_table("systems")
    op.drop_table("connection_types")
