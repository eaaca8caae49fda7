"""The shape the suite promises (docs/SERVICE_GUIDE.md): no service imports another service's code, every
service has the template's files, and the error reasons the code can send are exactly errors.proto's."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"authz": ROOT / "services" / "authz", "connections": ROOT / "services" / "connections",
            "depot": ROOT / "services" / "depot", "gateway": ROOT / "gateway"}
# The template (docs/SERVICE_GUIDE.md, "The template"): every service has these ...
TEMPLATE = ("server.py", "servicer.py", "policies.py", "convert.py", "model.py", "settings.py")
# ... and a service that owns a database also these (the gateway stores nothing: DESIGN §2).
TEMPLATE_WITH_DATABASE = ("store.py", "tables.py", "migrations/env.py", "migrations/versions")
OWNS_DATABASE = {"authz", "connections", "depot"}


def _package_of(service: str) -> str:
    return "gateway" if service == "gateway" else f"services.{service}"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def crossings(root: Path = ROOT) -> list[str]:
    """Every import, in a service's code or in rsctl, of another service's code ("file:line imports module")."""
    owners = {_package_of(s): s for s in SERVICES}
    out = []
    for service, folder in [*SERVICES.items(), ("rsctl", ROOT / "rsctl")]:
        folder = root / folder.relative_to(ROOT)
        for path in sorted(folder.rglob("*.py")):
            for line, module in _imports(path):
                for package, owner in owners.items():
                    if owner != service and (module == package or module.startswith(package + ".")):
                        out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def test_no_service_imports_another_services_code():
    assert crossings() == []


def test_the_import_walk_finds_a_crossing(tmp_path):
    for service, folder in SERVICES.items():
        (tmp_path / folder.relative_to(ROOT)).mkdir(parents=True)
    (tmp_path / "rsctl").mkdir()
    (tmp_path / "services" / "depot" / "model.py").write_text("from services.connections import catalog\n")
    (tmp_path / "gateway" / "x.py").write_text("import services.kit.auth\nimport services.authz.tables\n")
    assert crossings(tmp_path) == ["services/depot/model.py:1 imports services.connections",
                                   "gateway/x.py:2 imports services.authz.tables"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_the_templates_files(service):
    wanted = TEMPLATE + (TEMPLATE_WITH_DATABASE if service in OWNS_DATABASE else ())
    missing = [name for name in wanted if not (SERVICES[service] / name).exists()]
    assert missing == [], f"{service} lacks {missing} (docs/SERVICE_GUIDE.md)"


def test_the_service_guide_names_the_template():
    guide = (ROOT / "docs" / "SERVICE_GUIDE.md").read_text()
    for name in TEMPLATE + TEMPLATE_WITH_DATABASE:
        assert f"`{name.split('/')[0]}" in guide, name


# The relay is a process of the connections service (DESIGN §2): its own server, servicer, policies, model,
# settings and store (its queries), on the connections service's tables and migrations.
RELAY = ROOT / "services" / "connections" / "relay"
RELAY_TEMPLATE = ("server.py", "servicer.py", "policies.py", "model.py", "settings.py", "store.py", "__main__.py")


def test_the_relay_has_the_templates_files():
    missing = [name for name in RELAY_TEMPLATE if not (RELAY / name).exists()]
    assert missing == [], f"the relay lacks {missing} (docs/SERVICE_GUIDE.md)"
    assert not (RELAY / "tables.py").exists() and not (RELAY / "migrations").exists()  # connections' own


@pytest.mark.parametrize("folder", [*(SERVICES[s] for s in sorted(SERVICES)), RELAY], ids=[*sorted(SERVICES), "relay"])
def test_policies_are_one_table(folder):
    """policies.py builds the method table with the kit's policy_table: one shape in every service."""
    source = (folder / "policies.py").read_text()
    assert "def build_policies(" in source and "policy_table(" in source


def _all_modules():
    for package in ("services", "gateway", "rsctl"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if ".migrations" not in info.name and not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_reasons_the_code_sends_are_exactly_errors_proto():
    from services.kit import errors

    _all_modules()
    sent = {errors.DomainError.reason} | {cls.reason for cls in _subclasses(errors.DomainError)}
    sent |= set(errors.REASON_BY_CODE.values()) | {errors.DEFAULT_REASON}
    assert sent == errors.REASONS


def test_a_reason_outside_errors_proto_is_refused():
    from services.kit.errors import DomainError

    with pytest.raises(TypeError, match="ErrorReason"):
        type("Invented", (DomainError,), {"reason": "SOMETHING_NEW"})


def test_an_answer_without_our_reason_is_given_its_codes():
    import grpc

    from services.kit.errors import reason_for

    assert reason_for(grpc.StatusCode.DEADLINE_EXCEEDED) == "DEADLINE_EXCEEDED"
    assert reason_for(grpc.StatusCode.UNAVAILABLE, "SOMEONE_ELSES") == "DEPENDENCY_UNAVAILABLE"
    assert reason_for(grpc.StatusCode.UNKNOWN) == "INTERNAL"
    assert reason_for(grpc.StatusCode.NOT_FOUND, "NOT_FOUND") == "NOT_FOUND"
