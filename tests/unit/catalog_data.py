"""The connection-type catalog as the tests know it: as the initial migration freezes it, and the seed's table
transcribed row by row (shared by the catalog, migration and flow tests)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from services.connections.connection_types import ConnectionTypes, spec_from_row

ROOT = Path(__file__).resolve().parents[2]


def _initial_migration():
    path = ROOT / "services" / "connections" / "migrations" / "versions" / "0001_initial.py"
    spec = importlib.util.spec_from_file_location("connections_migration_0001", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The catalog as every database migrated to 0001 holds it, served as the service serves it.
INITIAL = _initial_migration()
CATALOG = ConnectionTypes([spec_from_row(row) for row in INITIAL.catalog_rows()])
CONNECTION_TYPES = CATALOG.types
by_code = CATALOG.find

# The seed's "Connection Types" table, transcribed row by row: (heading, name, description, SAP Note).
# One documented repair: the seed prints "Secure AS/400 Connection servers Enables OS Access for secure
# AS/400 based<NBSP> 2016103"; "servers" is the displaced last word of the description.
GUI = "SAP GUI based connection"
SOLMAN = "Connection to SAP Solution Manager"
JAVA = "Java / http-based connection types that enable / ease service connection to java based systems"
OS = "Connection types providing application sharing methods or access on OS-level (operating system)"
FURTHER = "Further connection types"

SEED_ROWS = [
    (GUI, "R/3 Support", "Enables remote access to an SAP system via SAP GUI", "812732"),
    (GUI, "R/3 Support with SNC/SSO", "Enables remote access to an SAP system via SAPGUI with SSO", ""),
    (GUI, "SAPGui+Browser Connect", "Enables remote access to an SAP system via SAP GUI and browser", "1721448"),
    (GUI, "SAP NI Connection",
     "Enables remote access to an SAP system via any client using SAP NI as protocol", "1718597"),
    (SOLMAN, "SAP Solution Manager", "Provides access to the solution graphic in SAP Solution Manager", "962516"),
    (SOLMAN, "Solution Manager Diagnostics",
     "Enables system related access to SAP Solution Manager Diagnostics", "962516"),
    (JAVA, "NW Mobile Java Apps", "Enables a connection to a SAP Netweaver Data Orchestration Engine", "1613402"),
    (JAVA, "HTTP Connect - URL access", "Provides access to http-based applications via Web browser", "592085"),
    (JAVA, "HTTP Connect w. SNC/SSO", "Provides access to http-based applications via Web browser with SSO", ""),
    (JAVA, "HTTP-based Tools", "Enables http-based access through client tools using http protocol", "1787981"),
    (JAVA, "SAP Business Client", "Enables a web-based connection via SAP Business Client", ""),
    (JAVA, "LoadRunner-Test", "Enables remote load testing", "850213"),
    (JAVA, "JAVA DEBUG", "Enables remote debugging of java based applications", "545519"),
    (JAVA, "SAP JVM Tools", "Enables debugging of JVM Tools", "2038631"),
    (OS, "GoToAssist", "Enables desktop sharing and remote support via LogMeIn", "2016077"),
    (OS, "Windows Terminal Server", "Enables application sharing access via Windows Terminal Server", "605795"),
    (OS, "WTS Connect with NLA",
     "Enables application sharing access via Windows Terminal Server with NLA Support", "1912318"),
    (OS, "Citrix Metaframe", "Enables application sharing access via Citrix Metaframe", "701588"),
    (OS, "AS/400-5250 Connection", "Enables OS access for AS/400 based servers", "79411"),
    (OS, "Secure AS/400 Connection", "Enables OS Access for secure AS/400 based servers", "2016103"),
    (OS, "Telnet Connection", "Enables OS access via Telnet", "37001"),
    (OS, "SSH Connection", "Enables SSH connection to customer systems", "1275351"),
    (OS, "VNC Connection", "Enables VNC connection to customer systems", "1327257"),
    (FURTHER, "JDBC/ODBC Connection",
     "Enables remote access to a Database using JDBC, ODBC and native connections", "1718601"),
    (FURTHER, "SAP HANA database", "Enables a remote connection to a SAP HANA database", "1592925"),
    (FURTHER, "SAP HANA MDC",
     "Enables a remote connection to a Multi Database Container HANA database. (Multi-tenant)", "2280051"),
    (FURTHER, "Upgrade Assistant", "Enables the remote usage of Upgrade Assistant", "125971"),
    (FURTHER, "SAPInst-GUI", "Enables the remote usage of SAPInst-GUI", "707848"),
    (FURTHER, "SAP-DB Connection", "Enables a remote connection to an SAP-DB", "202344"),
    (FURTHER, "TREX/BIA", "Enables access to TREX or BI accelerator system", "1058533"),
    (FURTHER, "Integration Repository", "Enables a connection to the Integration Repository", "800267"),
    (FURTHER, "Integration Directory", "Enables a connection to Integration Directory", "800267"),
    (FURTHER, "Windows Remote Debug", "Enables remote debugging for Windows-based applications", "1884079"),
]

# The seed's table as extracted from the seed text once, its wrapping artifact included.
