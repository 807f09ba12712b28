"""The shape of docker-compose.yml (and the Dockerfile it builds).

No Docker engine runs where this project is developed or tested, so `docker compose config` or
`up` cannot catch a broken file. It is kept honest instead by this test, which checks the
wiring between services (names, URLs, ports, start order, secrets), and by reading the images'
own documentation for their environment variables: the names allowed below come from
temporalio/docker-builds (docker-readme/auto-setup.md, docker-readme/server.md,
docker/auto-setup.sh), temporalio/ui (server/docker/config-template.yaml) and
docker-library/docs (postgres/content.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.core
import typer.main
import yaml

from grantflow.cli.main import app as cli_app
from grantflow.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"

TEMPORAL_SERVICES = {"temporal-db", "temporal", "temporal-ui"}
APP_SERVICES = {"migrate", "worker", "api"}
EXPECTED_SERVICES = TEMPORAL_SERVICES | APP_SERVICES | {"app-db"}
APP_ENV = {"GRANTFLOW_ENV", "GRANTFLOW_LOG_FORMAT", "GRANTFLOW_SECRET_KEY"}

# The temporalio/auto-setup variables this file may set: documented in docker-readme/ and read
# by docker/auto-setup.sh or the server's config template (LOG_LEVEL, NUM_HISTORY_SHARDS). A
# misspelt name is silently ignored by the image, so it must fail here instead.
AUTO_SETUP_ENV = {
    "DB", "DB_PORT", "DBNAME", "VISIBILITY_DBNAME", "SKIP_SCHEMA_SETUP", "SKIP_DB_CREATE",
    "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD",
    "POSTGRES_TLS_ENABLED", "POSTGRES_TLS_DISABLE_HOST_VERIFICATION", "POSTGRES_TLS_CERT_FILE",
    "POSTGRES_TLS_KEY_FILE", "POSTGRES_TLS_CA_FILE", "POSTGRES_TLS_SERVER_NAME",
    "TEMPORAL_ADDRESS", "SKIP_DEFAULT_NAMESPACE_CREATION", "DEFAULT_NAMESPACE",
    "DEFAULT_NAMESPACE_RETENTION", "SKIP_ADD_CUSTOM_SEARCH_ATTRIBUTES",
    "DYNAMIC_CONFIG_FILE_PATH", "BIND_ON_IP", "TEMPORAL_BROADCAST_ADDRESS", "LOG_LEVEL",
    "NUM_HISTORY_SHARDS",
}  # fmt: skip
UI_ENV = {
    "TEMPORAL_ADDRESS", "TEMPORAL_UI_PORT", "TEMPORAL_CORS_ORIGINS", "TEMPORAL_UI_PUBLIC_PATH",
    "TEMPORAL_DEFAULT_NAMESPACE", "TEMPORAL_CSRF_COOKIE_INSECURE", "TEMPORAL_AUTH_ENABLED",
    "TEMPORAL_DISABLE_WRITE_ACTIONS",
}  # fmt: skip
POSTGRES_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}")
_USERINFO = re.compile(r"[a-z]+://[^:/@]+:(?P<password>.*)@[^@]+$")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _interpolate(value: str) -> str:
    """What compose makes of `value` when each variable with a default is left unset and
    every other one is set (to `set-<name>`)."""

    def substitute(match: re.Match[str]) -> str:
        if match["op"] in (":-", "-"):
            return match["arg"]
        return f"set-{match['name'].lower()}"

    return _VARIABLE.sub(substitute, value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, raw (not interpolated)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {kv[0]: kv[1] if len(kv) == 2 else "" for kv in pairs}
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, the short list form meaning service_started."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def _published_ports(service: dict[str, Any]) -> list[int]:
    published: list[int] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                published.append(int(_interpolate(str(port["published"]))))
            continue
        spec = _interpolate(str(port)).split("/")[0]  # drop /tcp
        parts = spec.rsplit(":", 2)
        if len(parts) >= 2:  # HOST:CONTAINER or IP:HOST:CONTAINER; a bare port is not fixed
            published.append(int(parts[-2]))
    return published


def _address(value: str) -> tuple[str, int]:
    host, _, port = _interpolate(value).rpartition(":")
    return host, int(port)


def _postgres_major(image: str) -> int:
    tag = image.partition(":")[2] or "latest"
    match = re.match(r"\d+", _interpolate(tag))
    assert match, f"pin a major version of postgres, not {image!r}"
    return int(match.group())


def test_the_services_exist() -> None:
    services = _services()
    assert set(services) >= EXPECTED_SERVICES, sorted(EXPECTED_SERVICES - set(services))


def test_every_app_service_uses_the_same_image_and_build() -> None:
    services = _services()
    first = services["api"]
    assert first.get("image") and first.get("build"), "the app services build their image"
    for name in APP_SERVICES:
        assert services[name].get("image") == first["image"], name
        assert services[name].get("build") == first["build"], name
    for name in set(services) - APP_SERVICES:
        assert services[name].get("image") != first["image"], f"{name} runs the app image?"


def test_the_app_image_runs_the_grantflow_cli() -> None:
    """The compose commands omit `grantflow`: the Dockerfile's ENTRYPOINT supplies it, and
    each command names a subcommand the CLI really has."""
    build = _services()["api"]["build"]
    if isinstance(build, str):
        build = {"context": build}
    dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    entrypoints = re.findall(r"^ENTRYPOINT\s+(.+)$", dockerfile.read_text(), re.MULTILINE)
    assert entrypoints, f"{dockerfile} has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["grantflow"]

    cli = typer.main.get_command(cli_app)
    assert isinstance(cli, typer.core.TyperGroup)
    subcommands = set(cli.commands)
    for name in APP_SERVICES:
        command = _services()[name]["command"]
        assert isinstance(command, list) and command, name
        assert command[0] == name, f"{name} runs `grantflow {command[0]}`"
        assert command[0] in subcommands, f"`grantflow {command[0]}` does not exist"


def test_app_services_reach_postgres_and_temporal_by_service_name() -> None:
    services = _services()
    app_db = _env(services["app-db"])
    for name in APP_SERVICES:
        env = _env(services[name])
        assert set(env) >= APP_ENV, f"{name} lacks {sorted(APP_ENV - set(env))}"
        assert env["GRANTFLOW_ENV"] == "production"
        assert env["GRANTFLOW_LOG_FORMAT"] == "json"

        url = urlsplit(_interpolate(env["DATABASE_URL"]))
        assert url.scheme in ("postgresql", "postgres"), url.scheme
        assert url.hostname == "app-db", url.hostname
        assert url.port == 5432
        assert url.username == app_db["POSTGRES_USER"]
        assert url.path == "/" + app_db["POSTGRES_DB"]
        # The URL's password is the very variable app-db's password is set from.
        passwords = _REQUIRED.findall(env["DATABASE_URL"])
        assert passwords == _REQUIRED.findall(app_db["POSTGRES_PASSWORD"]), name

        assert _address(env["TEMPORAL_ADDRESS"]) == ("temporal", 7233), name
        temporal_ns = _env(services["temporal"]).get("DEFAULT_NAMESPACE", "default")
        assert env.get("TEMPORAL_NAMESPACE", "default") == temporal_ns, name


def test_the_app_services_set_only_settings_grantflow_reads() -> None:
    """A variable no setting reads is ignored without a word (the settings ignore extras), yet
    compose may refuse to start without it."""
    settings = Settings.model_fields.items()
    read = {str(f.validation_alias or f"GRANTFLOW_{name}").upper() for name, f in settings}
    for name in APP_SERVICES:
        unread = set(_env(_services()[name])) - read
        assert not unread, f"{name} sets {sorted(unread)}, which no setting reads"


def test_temporal_persists_in_the_temporal_db_service() -> None:
    services = _services()
    temporal, db = services["temporal"], services["temporal-db"]
    assert str(temporal["image"]).startswith("temporalio/auto-setup:")
    env, db_env = _env(temporal), _env(db)
    unknown = set(env) - AUTO_SETUP_ENV
    assert not unknown, f"not read by temporalio/auto-setup: {sorted(unknown)}"
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "temporal-db"
    assert env["DB_PORT"] == "5432"  # auto-setup.sh defaults it to MySQL's 3306
    assert env["POSTGRES_USER"] == db_env["POSTGRES_USER"]
    assert _REQUIRED.findall(env["POSTGRES_PWD"]) == _REQUIRED.findall(db_env["POSTGRES_PASSWORD"])
    assert _depends_on(temporal).get("temporal-db") == "service_healthy"


def test_the_ui_talks_to_temporal() -> None:
    ui = _services()["temporal-ui"]
    assert str(ui["image"]).startswith("temporalio/ui:")
    env = _env(ui)
    assert set(env) <= UI_ENV, f"not read by temporalio/ui: {sorted(set(env) - UI_ENV)}"
    assert _address(env["TEMPORAL_ADDRESS"]) == ("temporal", 7233)
    assert env.get("TEMPORAL_CORS_ORIGINS")
    assert 8080 in _published_ports(ui)


def test_each_database_has_a_healthcheck_and_a_named_volume() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name in ("temporal-db", "app-db"):
        db = compose["services"][name]
        assert str(db["image"]).startswith("postgres:"), name
        assert set(_env(db)) <= POSTGRES_ENV, name
        test = db["healthcheck"]["test"]
        assert "pg_isready" in (" ".join(test) if isinstance(test, list) else test), name
        # The image's documented data directory: /var/lib/postgresql/data up to 17, and
        # /var/lib/postgresql from 18 on (a volume anywhere else silently loses the data).
        data = "/var/lib/postgresql" + ("/data" if _postgres_major(db["image"]) < 18 else "")
        mounts = [str(v).split(":") for v in db.get("volumes") or []]
        named = [m for m in mounts if len(m) >= 2 and m[1] == data and not m[0].startswith(".")]
        assert named and named[0][0] in declared, f"{name} keeps no named volume at {data}"
    assert _env(compose["services"]["app-db"])["POSTGRES_DB"] == "grantflow"


def test_every_depends_on_names_a_service_that_exists() -> None:
    services = _services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert target != name
            assert condition in conditions, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_start_order() -> None:
    services = _services()
    migrate = _depends_on(services["migrate"])
    assert migrate.get("app-db") == "service_healthy"
    assert migrate.get("temporal") == "service_healthy"  # the namespace must exist
    assert services["migrate"].get("restart") == "no"
    for name in ("worker", "api"):
        deps = _depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("temporal") in ("service_started", "service_healthy"), name


def test_every_published_port_is_unique() -> None:
    services = _services()
    published = [port for service in services.values() for port in _published_ports(service)]
    assert published, "nothing is published"
    assert len(published) == len(set(published)), sorted(published)
    for name, service in services.items():
        replicas = (service.get("deploy") or {}).get("replicas", 1)
        if replicas > 1:  # replicas cannot all bind one host port
            assert not _published_ports(service), name


def test_workers_scale_out_and_stop_gracefully() -> None:
    worker = _services()["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker  # a fixed name forbids a second replica
    assert worker["stop_grace_period"] == "30s"


def test_the_api_is_published_and_has_a_healthcheck() -> None:
    api = _services()["api"]
    command = api["command"]
    # Inside its container the API must listen beyond loopback to be reachable at all.
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    port = int(command[command.index("--port") + 1])
    assert port in _published_ports(api)
    test = api["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", "the slim image has no curl"
    assert f"http://localhost:{port}/healthz" in test[-1]


def test_nothing_secret_is_committed() -> None:
    """Passwords and keys come from the environment and are required, never defaulted."""
    secret = re.compile(r"PASSWORD|PWD|SECRET")
    checked = 0
    for name, service in _services().items():
        for key, value in _env(service).items():
            if secret.search(key):
                assert _REQUIRED.fullmatch(value), f"{name}.{key} is not ${{VAR:?...}}"
                checked += 1
            elif key == "DATABASE_URL":
                userinfo = _USERINFO.match(value)
                assert userinfo, f"{name}.DATABASE_URL has no password"
                assert _REQUIRED.fullmatch(userinfo["password"]), f"{name}.DATABASE_URL"
                checked += 1
    assert checked == 3 + 2 * len(APP_SERVICES)
