"""docker-compose.yml, the Dockerfile and deploy/, checked for what can be checked without a Docker engine:
one database, role and password per service; a gRPC health check per service; no secret literal in any
environment (the depot's master key is a compose secret); mutual TLS with each service holding only its own
private key; one Dockerfile whose four targets run the four service modules."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from services.kit.config import DEFAULT_PORTS
from services.kit.supervisor import MODULES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = ("authz", "depot", "connections", "gateway")
WITH_DATABASE = ("authz", "depot", "connections")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|PASSPHRASE|TOKEN|(^|_)KEY($|_)|CREDENTIAL", re.I)
SECRET_VALUE = re.compile(r"^(rsmk1:|rsdev1:|-----BEGIN|rs_[A-Za-z0-9_-]{20,})|^[A-Za-z0-9+/_=-]{32,}$")


def service(name: str) -> dict:
    return COMPOSE["services"][name]


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounted_secrets(name: str) -> dict[str, str]:
    """secret source -> path inside the container."""
    out = {}
    for item in service(name).get("secrets", []):
        if isinstance(item, str):
            out[item] = f"/run/secrets/{item}"
        else:
            target = item.get("target", item["source"])
            out[item["source"]] = target if target.startswith("/") else f"/run/secrets/{target}"
    return out


def secret_file(source: str) -> str:
    spec = COMPOSE["secrets"][source]
    assert set(spec) == {"file"}, f"secret {source} must come from a file, not {spec}"
    return spec["file"]


def dockerfile_targets() -> dict[str, dict[str, str]]:
    """target -> {"entrypoint": ..., "expose": ..., "healthcheck": ...} from the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    targets: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = targets.setdefault(words[-1], {}) if "AS" in [w.upper() for w in words] else None
        elif current is not None and words[0] in ("ENTRYPOINT", "EXPOSE", "HEALTHCHECK"):
            current[words[0].lower()] = line.split(None, 1)[1].strip()
    return targets


# --- databases ------------------------------------------------------------------------------------------
def test_each_service_has_its_own_database_role_and_password():
    seen_urls, seen_users, seen_password_files = set(), set(), set()
    for name in WITH_DATABASE:
        env = environment(name)
        url = make_url(env[f"RS_{name.upper()}_DATABASE_URL"])
        assert url.get_backend_name() == "postgresql" and url.host == "postgres"
        assert url.username == f"rs_{name}" and url.database == f"rs_{name}"
        assert url.password is None, f"{name}: the database password must not stand in the URL"
        password_file = env[f"RS_{name.upper()}_DATABASE_PASSWORD_FILE"]
        assert mounted_secrets(name).get(f"{name}_db_password") == password_file
        seen_urls.add(str(url))
        seen_users.add(url.username)
        seen_password_files.add(secret_file(f"{name}_db_password"))
        # no service is handed another's database password
        others = {f"{o}_db_password" for o in WITH_DATABASE if o != name} | {"postgres_password"}
        assert not others & set(mounted_secrets(name)), name
    assert len(seen_urls) == len(seen_users) == len(seen_password_files) == 3
    assert not any(k.endswith("_DATABASE_URL") for k in environment("gateway")), "the gateway stores nothing"


def test_postgres_creates_the_three_databases_with_their_own_roles():
    pg = service("postgres")
    env = environment("postgres")
    assert env["RS_DATABASES"].split() == list(WITH_DATABASE)
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert {"postgres_password", *(f"{n}_db_password" for n in WITH_DATABASE)} <= set(mounted_secrets("postgres"))
    init = [v for v in pg["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert len(init) == 1
    script = ROOT / init[0].split(":")[0]
    text = script.read_text()
    for statement in ("CREATE ROLE %I LOGIN PASSWORD %L", "CREATE DATABASE %I OWNER %I",
                      "REVOKE ALL ON DATABASE %I FROM PUBLIC"):
        assert statement in text
    assert 'role="rs_${service}"' in text and "_db_password" in text
    assert "healthcheck" in pg and "pg_isready" in pg["healthcheck"]["test"]


# --- health checks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_a_grpc_health_check_on_its_port(name):
    port = environment(name)[f"RS_{name.upper()}_PORT"]
    assert int(port) == DEFAULT_PORTS[name]
    test = service(name)["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:4] == ["python", "-m", "services.kit.healthcheck"]
    assert test[test.index("--service") + 1] == name
    assert test[-1] == f"127.0.0.1:{port}"


def test_services_wait_for_authz_and_postgres_to_be_healthy():
    for name in ("depot", "connections", "gateway"):
        assert service(name)["depends_on"]["authz"] == {"condition": "service_healthy"}
    for name in WITH_DATABASE:
        assert service(name)["depends_on"]["postgres"] == {"condition": "service_healthy"}


# --- secrets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ("postgres", *SERVICES))
def test_no_secret_literal_in_any_environment(name):
    mounted = set(mounted_secrets(name).values())
    for key, value in environment(name).items():
        if SECRET_NAME.search(key):
            # a secret's variable names a file: a mounted secret, or the token file authz writes
            assert value in mounted or value.startswith("/var/lib/rs-tokens/"), \
                f"{name}: {key}={value!r} is not the path of a mounted secret"
            continue
        assert not SECRET_VALUE.search(value), f"{name}: {key} holds a secret-looking value"
        if "://" in value:
            assert make_url(value).password is None, f"{name}: {key} carries a password"


def test_the_depot_master_key_is_a_compose_secret():
    env = environment("depot")
    assert env["RS_PROFILE"] == "production"  # refuses a missing or development master key
    assert env["RS_DEPOT_MASTER_KEY_FILE"] == "/run/secrets/depot_master_key"
    assert "depot_master_key" in mounted_secrets("depot")
    assert secret_file("depot_master_key").startswith("./deploy/secrets/")
    for other in ("authz", "connections", "gateway", "postgres"):
        assert "depot_master_key" not in mounted_secrets(other)
    assert environment("connections")["RS_CONNECTIONS_SIGNING_KEY_FILE"] == "/run/secrets/connections_signing_key"
    # the evidence key stays the same across restarts and replicas of the gateway, and only the gateway holds it
    assert environment("gateway")["RS_GATEWAY_EVIDENCE_KEY_FILE"] == "/run/secrets/gateway_evidence_key"
    assert [s for s in ("authz", "depot", "connections", "relay") if "gateway_evidence_key" in mounted_secrets(s)] == []


def test_secret_files_are_never_committed():
    ignore = (ROOT / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert ignore[ignore.index("*") - 0] == "*" and "!.gitignore" in ignore
    for source in COMPOSE["secrets"]:
        path = secret_file(source)
        assert path.startswith(("./deploy/secrets/", "./var/certs/")), path


# --- mutual TLS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SERVICES)
def test_mutual_tls_with_each_service_holding_only_its_own_key(name):
    env = environment(name)
    assert env["RS_TLS"] == "1" and env["RS_TLS_DIR"] == "/run/certs"
    mounts = mounted_secrets(name)
    assert mounts["tls_ca"] == "/run/certs/ca.pem"
    assert mounts[f"{name}_tls_cert"] == f"/run/certs/{name}.pem"
    assert mounts[f"{name}_tls_key"] == f"/run/certs/{name}-key.pem"
    assert secret_file(f"{name}_tls_key") == f"./var/certs/{name}-key.pem"
    keys = {s for s in mounts if s.endswith("_tls_key")}
    assert keys <= {f"{name}_tls_key", "gateway_public_tls_key"}
    if name != "gateway":
        assert keys == {f"{name}_tls_key"}


def test_the_gateway_serves_clients_with_its_public_certificate():
    env = environment("gateway")
    mounts = mounted_secrets("gateway")
    assert mounts["gateway_public_tls_cert"] == env["RS_GATEWAY_PUBLIC_TLS_CERT"]
    assert mounts["gateway_public_tls_key"] == env["RS_GATEWAY_PUBLIC_TLS_KEY"]
    published = [str(p) for p in service("gateway")["ports"]]
    assert "50051:50051" in published
    for name in ("authz", "depot", "connections"):  # internal services are not published
        assert not [p for p in service(name).get("ports", []) if str(p).endswith(str(DEFAULT_PORTS[name]))]


# --- metrics and configuration --------------------------------------------------------------------------
def test_metrics_ports_are_distinct_and_published_on_loopback_only():
    ports = {}
    for name in SERVICES:
        port = environment(name)[f"RS_{name.upper()}_METRICS_PORT"]
        ports[name] = port
        assert f"127.0.0.1:{port}:{port}" in [str(p) for p in service(name)["ports"]]
    assert sorted(ports.values()) == ["9101", "9102", "9103", "9104"]


@pytest.mark.parametrize("name", SERVICES)
def test_configuration_is_by_environment_only(name):
    spec = service(name)
    assert "command" not in spec and "entrypoint" not in spec and "env_file" not in spec
    assert spec["build"]["target"] == name and spec["build"]["dockerfile"] == "Dockerfile"
    for key in ("RS_AUTHZ_ADDR", "RS_DEPOT_ADDR", "RS_CONNECTIONS_ADDR"):
        host, port = environment(name)[key].split(":")
        assert host in COMPOSE["services"] and int(port) == DEFAULT_PORTS[host]


# --- Dockerfile ------------------------------------------------------------------------------------------
def test_one_dockerfile_with_four_entrypoints():
    targets = dockerfile_targets()
    for name in SERVICES:
        spec = targets[name]
        assert shlex.split(spec["entrypoint"].replace("[", "").replace("]", "").replace(",", " ")) == \
            ["python", "-m", MODULES[name]]
        assert spec["expose"] == str(DEFAULT_PORTS[name])
        assert "services.kit.healthcheck" in spec["healthcheck"]
        module = ROOT / (MODULES[name].replace(".", "/") + ".py")
        assert module.exists(), module
        assert "__main__" in module.read_text()


def test_dockerignore_keeps_state_and_keys_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", "var", "gen", ".git", "*.pem", "*.key", "deploy", "tests"):
        assert pattern in ignored


# --- the variables compose sets are the ones the kit reads ----------------------------------------------
def test_the_database_password_comes_from_its_file(monkeypatch, tmp_path):
    from services.kit.config import ServiceConfig

    secret = tmp_path / "depot_db_password"
    secret.write_text("p@ss/word:with%odd chars\n")
    monkeypatch.setenv("RS_DEPOT_DATABASE_URL", environment("depot")["RS_DEPOT_DATABASE_URL"])
    monkeypatch.setenv("RS_DEPOT_DATABASE_PASSWORD_FILE", str(secret))
    url = make_url(ServiceConfig.from_env("depot").database_url)
    assert (url.username, url.password, url.host, url.database) == \
        ("rs_depot", "p@ss/word:with%odd chars", "postgres", "rs_depot")
    monkeypatch.setenv("RS_DEPOT_DATABASE_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="RS_DEPOT_DATABASE_PASSWORD_FILE"):
        ServiceConfig.from_env("depot")


def test_tls_and_metrics_variables_are_read(monkeypatch):
    from services.kit.config import ServiceConfig

    for key, value in environment("gateway").items():
        monkeypatch.setenv(key, value)
    config = ServiceConfig.from_env("gateway")
    assert config.tls and config.certs_dir == Path("/run/certs")
    assert config.public_tls_cert == Path("/run/certs/gateway-public.pem")
    assert config.metrics_port == 9101 and config.metrics_host == "0.0.0.0" and config.host == "0.0.0.0"
    assert ServiceConfig.from_env("depot").public_tls_cert is None  # the public certificate is the gateway's
    monkeypatch.setenv("RS_TLS", "maybe")
    with pytest.raises(SystemExit, match="RS_TLS"):
        ServiceConfig.from_env("gateway")


# --- the relay ---------------------------------------------------------------------------------------------
def test_the_relay_runs_as_part_of_the_connections_service():
    """Its own process and image target, on the connections database, token and certificate, published with
    the public certificate (connectors and tunnels come from outside), and named in connector files."""
    env, mounts = environment("relay"), mounted_secrets("relay")
    assert service("relay")["build"]["target"] == "relay"
    assert env["RS_CONNECTIONS_DATABASE_URL"] == environment("connections")["RS_CONNECTIONS_DATABASE_URL"]
    assert env["RS_CONNECTIONS_TOKEN_FILE"] == environment("connections")["RS_CONNECTIONS_TOKEN_FILE"]
    assert mounts["connections_tls_key"] == "/run/certs/connections-key.pem"
    assert {s for s in mounts if s.endswith("_tls_key")} == {"connections_tls_key", "gateway_public_tls_key"}
    assert mounts["gateway_public_tls_cert"] == env["RS_RELAY_PUBLIC_TLS_CERT"]
    assert "50055:50055" in [str(p) for p in service("relay")["ports"]]
    assert "127.0.0.1:9105:9105" in [str(p) for p in service("relay")["ports"]]
    assert service("relay")["healthcheck"]["test"][-1] == "127.0.0.1:50055"
    assert "RS_RELAY_ADDRESSES" in environment("connections")
    spec = dockerfile_targets()["relay"]
    assert shlex.split(spec["entrypoint"].replace("[", "").replace("]", "").replace(",", " ")) == \
        ["python", "-m", MODULES["relay"]]
    assert spec["expose"] == str(DEFAULT_PORTS["relay"])
    assert (ROOT / "services" / "connections" / "relay" / "__main__.py").exists()


# --- tracing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", (*SERVICES, "relay"))
def test_every_service_exports_traces_only_where_the_operator_points_it(name):
    env = environment(name)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"  # unset: tracing off
    assert env["OTEL_SERVICE_NAME"] == f"remotesupport-{name}"


def test_the_tracing_backend_is_opt_in_and_its_ui_on_loopback_only():
    jaeger = service("jaeger")
    assert jaeger["profiles"] == ["tracing"] and ":" in jaeger["image"] and not jaeger["image"].endswith(":latest")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert all(str(p).startswith("127.0.0.1:") for p in jaeger["ports"])
