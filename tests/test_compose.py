"""The shape of docker-compose.yml (and the Dockerfile and deploy/ files it mounts).

No Docker engine runs where this project is developed or tested, so `docker compose config` or
`up` cannot catch a broken file. It is kept honest instead by this test, which checks the
wiring between services (names, URLs, ports, start order, secrets, mounted files), and by
reading the images' own documentation for their environment variables: each list of allowed
names below says where it comes from.
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

TEMPORAL_SERVICES = {
    "temporal-db",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
}
APP_SERVICES = {"migrate", "worker", "api"}
OPERATOR_SERVICES = {"proxy", "prometheus", "grafana"}
EXPECTED_SERVICES = TEMPORAL_SERVICES | APP_SERVICES | OPERATOR_SERVICES | {"app-db"}
APP_ENV = {"GRANTFLOW_ENV", "GRANTFLOW_LOG_FORMAT", "GRANTFLOW_SECRET_KEY"}
# The first Temporal release with frontend.enableCancelWorkerPollsOnShutdown
# (common/dynamicconfig/constants.go in temporalio/temporal: absent at v1.30.6, present at
# v1.31.0), which grantflow's worker drain relies on.
DRAIN_SETTING = "frontend.enableCancelWorkerPollsOnShutdown"
FIRST_TEMPORAL_WITH_DRAIN = (1, 31, 0)

# The temporalio/server variables this file may set, read by the server's embedded config
# template (common/config/config_template_embedded.yaml in temporalio/temporal, v1.31: the
# PostgreSQL, listening, logging and metrics ones) and by the image's entrypoint
# (docker/scripts/sh/entrypoint.sh: BIND_ON_IP, TEMPORAL_BROADCAST_ADDRESS). A misspelt name is
# silently ignored by the image, so it must fail here instead.
SERVER_ENV = {
    "DB", "DB_PORT", "DBNAME", "VISIBILITY_DBNAME", "VISIBILITY_DB_PORT",
    "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD",
    "VISIBILITY_POSTGRES_SEEDS", "VISIBILITY_POSTGRES_USER", "VISIBILITY_POSTGRES_PWD",
    "SQL_TLS_ENABLED", "SQL_CA", "SQL_CERT", "SQL_CERT_KEY", "SQL_HOST_VERIFICATION",
    "SQL_HOST_NAME", "SQL_MAX_CONNS", "SQL_MAX_IDLE_CONNS", "SQL_MAX_CONN_TIME",
    "SQL_VIS_MAX_CONNS", "SQL_VIS_MAX_IDLE_CONNS", "SQL_VIS_MAX_CONN_TIME",
    "BIND_ON_IP", "TEMPORAL_BROADCAST_ADDRESS", "DYNAMIC_CONFIG_FILE_PATH", "LOG_LEVEL",
    "NUM_HISTORY_SHARDS", "PROMETHEUS_ENDPOINT", "PROMETHEUS_TIMER_TYPE",
    "FRONTEND_GRPC_PORT", "FRONTEND_HTTP_PORT", "PUBLIC_FRONTEND_ADDRESS",
}  # fmt: skip
# temporalio/admin-tools: temporal-sql-tool's flags that read the environment (tools/sql/main.go
# in temporalio/temporal, `EnvVar:`); the image sets none of its own (docker/targets/
# admin-tools.Dockerfile).
ADMIN_TOOLS_ENV = {
    "SQL_HOST", "SQL_PORT", "SQL_USER", "SQL_PASSWORD", "SQL_DATABASE", "SQL_PLUGIN",
    "SQL_CONNECT_ATTRIBUTES", "SQL_TLS", "SQL_TLS_CERT_FILE", "SQL_TLS_KEY_FILE",
    "SQL_TLS_CA_FILE", "SQL_TLS_SERVER_NAME", "SQL_TLS_DISABLE_HOST_VERIFICATION",
}  # fmt: skip
UI_ENV = {
    "TEMPORAL_ADDRESS", "TEMPORAL_UI_PORT", "TEMPORAL_CORS_ORIGINS", "TEMPORAL_UI_PUBLIC_PATH",
    "TEMPORAL_DEFAULT_NAMESPACE", "TEMPORAL_CSRF_COOKIE_INSECURE", "TEMPORAL_AUTH_ENABLED",
    "TEMPORAL_DISABLE_WRITE_ACTIONS",
}  # fmt: skip
POSTGRES_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS"}
# grafana/grafana: GF_<SECTION>_<KEY> overrides a key of grafana.ini ("Override configuration
# with environment variables", grafana.com/docs/grafana/latest/setup-grafana/
# configure-grafana/); these are [security] admin_user and admin_password, [users]
# allow_sign_up and [auth.anonymous] enabled.
GRAFANA_ENV = {
    "GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD", "GF_USERS_ALLOW_SIGN_UP",
    "GF_AUTH_ANONYMOUS_ENABLED",
}  # fmt: skip
# Read by uvicorn itself, not by grantflow's settings: which peers' X-Forwarded-For it trusts
# (uvicorn/config.py, `FORWARDED_ALLOW_IPS`; uvicorn.org/settings, --forwarded-allow-ips).
UVICORN_ENV = {"FORWARDED_ALLOW_IPS"}

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
    compose may refuse to start without it. The API also runs uvicorn, which reads its own."""
    settings = Settings.model_fields.items()
    read = {str(f.validation_alias or f"GRANTFLOW_{name}").upper() for name, f in settings}
    for name in APP_SERVICES:
        unread = set(_env(_services()[name])) - read - (UVICORN_ENV if name == "api" else set())
        assert not unread, f"{name} sets {sorted(unread)}, which no setting reads"


def _version(image: str) -> tuple[int, ...]:
    tag = _interpolate(image.partition(":")[2])
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin a release of {image}, not {tag!r}"
    return tuple(int(part) for part in tag.split("."))


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts of this checkout's files, by path inside the container."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def _mounted(service: dict[str, Any], inside: str) -> Path:
    """The file of this checkout that a service sees at `inside` (mounted itself, or within a
    mounted directory); it must exist."""
    for target, source in _mounts(service).items():
        if inside == target or inside.startswith(target.rstrip("/") + "/"):
            path = source / inside[len(target) :].lstrip("/") if inside != target else source
            assert path.exists(), f"{inside} is mounted from {path}, which does not exist"
            return path
    raise AssertionError(f"nothing of this checkout is mounted at {inside}")


def test_temporal_persists_in_the_temporal_db_service() -> None:
    services = _services()
    temporal, db = services["temporal"], services["temporal-db"]
    assert str(temporal["image"]).startswith("temporalio/server:")  # auto-setup is deprecated
    env, db_env = _env(temporal), _env(db)
    unknown = set(env) - SERVER_ENV
    assert not unknown, f"not read by temporalio/server: {sorted(unknown)}"
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "temporal-db"
    assert env.get("DB_PORT", "5432") == "5432"
    assert env["POSTGRES_USER"] == db_env["POSTGRES_USER"]
    assert _REQUIRED.findall(env["POSTGRES_PWD"]) == _REQUIRED.findall(db_env["POSTGRES_PASSWORD"])
    # Without it the entrypoint binds the container's own address only, and the healthcheck's
    # localhost finds nothing.
    assert env["BIND_ON_IP"] == "0.0.0.0"  # noqa: S104
    deps = _depends_on(temporal)
    assert deps.get("temporal-db") == "service_healthy"
    assert deps.get("temporal-schema") == "service_completed_successfully"


def test_the_schema_job_sets_up_temporal_db_with_the_servers_own_version() -> None:
    services = _services()
    job, temporal, db = services["temporal-schema"], services["temporal"], services["temporal-db"]
    assert str(job["image"]).startswith("temporalio/admin-tools:")
    # The schema files come from admin-tools: the same release as the server, always.
    assert str(job["image"]).partition(":")[2] == str(temporal["image"]).partition(":")[2]
    env = _env(job)
    unknown = set(env) - ADMIN_TOOLS_ENV
    assert not unknown, f"not read by temporal-sql-tool: {sorted(unknown)}"
    assert env["SQL_PLUGIN"] == "postgres12"
    assert env["SQL_HOST"] == "temporal-db"
    assert env["SQL_PORT"] == "5432"
    assert env["SQL_USER"] == _env(db)["POSTGRES_USER"]
    assert _REQUIRED.findall(env["SQL_PASSWORD"]) == _REQUIRED.findall(
        _env(db)["POSTGRES_PASSWORD"]
    )
    assert _depends_on(job).get("temporal-db") == "service_healthy"
    assert job.get("restart") == "no"
    script = _mounted(job, job["command"][0]).read_text()
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert f'temporal-sql-tool --db "$1" {step}' in script, step
    # The image's schema directories (docker/targets/admin-tools.Dockerfile copies them there).
    assert "schema=/etc/temporal/schema/postgresql/v12" in script
    assert 'setup temporal "$schema/temporal/versioned"' in script
    assert 'setup temporal_visibility "$schema/visibility/versioned"' in script


def test_temporal_cancels_a_stopping_workers_polls() -> None:
    """The worker's drain needs the server to cancel a stopping worker's polls: a release that
    has the setting, and the setting on in the dynamic config file the server reads."""
    temporal = _services()["temporal"]
    assert _version(temporal["image"]) >= FIRST_TEMPORAL_WITH_DRAIN
    path = _mounted(temporal, _env(temporal)["DYNAMIC_CONFIG_FILE_PATH"])
    dynamic = yaml.safe_load(path.read_text())
    assert dynamic[DRAIN_SETTING] == [{"value": True, "constraints": {}}]


def test_the_namespace_job_creates_the_namespace_the_app_uses() -> None:
    services = _services()
    job = services["temporal-namespace"]
    assert str(job["image"]).startswith("temporalio/admin-tools:")
    assert not _env(job)
    assert _depends_on(job).get("temporal") == "service_healthy"
    assert job.get("restart") == "no"
    script, address, namespace, retention = job["command"]
    _mounted(job, script)
    assert _address(address) == ("temporal", 7233)
    assert namespace == _env(services["api"]).get("TEMPORAL_NAMESPACE", "default")
    assert re.fullmatch(r"\d+d", retention)


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
    # grantflow migrate registers its search attributes in the namespace: it must exist.
    assert migrate.get("temporal-namespace") == "service_completed_successfully"
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


def _python_probe(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "python, not curl: the slim image has no curl"
    return str(test[-1])


def test_the_api_listens_on_its_network_only_and_has_a_liveness_check() -> None:
    api = _services()["api"]
    command = api["command"]
    # Inside its container the API must listen beyond loopback to be reachable at all.
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    port = int(command[command.index("--port") + 1])
    assert not api.get("ports"), "the API is reached through the TLS proxy only"
    # Liveness, not readiness: a PostgreSQL outage must not get every API container restarted.
    assert f"http://localhost:{port}/livez" in _python_probe(api)


def test_each_worker_has_a_healthcheck_on_its_metrics_port() -> None:
    worker = _services()["worker"]
    # The exporter is off unless its port is set, and must listen beyond loopback for
    # Prometheus in another container; the probe checks that same port.
    env = worker["environment"]
    assert env["GRANTFLOW_WORKER_METRICS_PORT"] == "9464"
    assert env["GRANTFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert "http://localhost:9464/metrics" in _python_probe(worker)
    assert env["DATABASE_URL"] == _services()["api"]["environment"]["DATABASE_URL"]


def test_the_image_can_trace() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on; the image must have its packages."""
    assert "'.[tracing]'" in (ROOT / "Dockerfile").read_text()


def _nginx() -> str:
    return _mounted(_services()["proxy"], "/etc/nginx/nginx.conf").read_text()


def test_tls_in_front_of_the_api() -> None:
    """Tokens and cookies travel encrypted only: the proxy alone is published, serves TLS with
    its certificate from compose secrets, and answers plain HTTP with a redirect."""
    compose = _compose()
    proxy = compose["services"]["proxy"]
    assert str(proxy["image"]).startswith("nginx:")
    assert {443, 80} <= set(_published_ports(proxy))
    assert _depends_on(proxy).get("api") == "service_healthy"
    conf = _nginx()
    servers = conf.split("server {")[1:]
    plain = [s for s in servers if re.search(r"listen 80;", s)]
    assert len(plain) == 1 and re.search(r"return 30[18] https://", plain[0]), plain
    assert "proxy_pass" not in plain[0], "plain HTTP must never reach the API"
    tls = [s for s in servers if "listen 443 ssl" in s]
    assert len(tls) == 1
    assert "proxy_pass http://grantflow_api" in tls[0]
    assert re.search(r"server api:8000;", conf)
    assert "X-Forwarded-Proto https" in tls[0]
    assert "Strict-Transport-Security" in tls[0]

    secrets = compose["secrets"]
    for secret, directive in (
        ("tls_certificate", "ssl_certificate"),
        ("tls_key", "ssl_certificate_key"),
    ):
        assert secret in proxy["secrets"], secret
        assert _REQUIRED.fullmatch(secrets[secret]["file"]), (
            f"{secret} is a file the operator names"
        )
        assert f"{directive} /run/secrets/{secret};" in tls[0], directive
    # Nobody else reads the private key.
    assert [n for n, s in compose["services"].items() if "tls_key" in (s.get("secrets") or [])] == [
        "proxy"
    ]


def test_metrics_stay_inside_and_prometheus_scrapes_every_process() -> None:
    services = _services()
    assert "location = /metrics" in _nginx() and "return 404" in _nginx()
    prometheus = services["prometheus"]
    assert str(prometheus["image"]).startswith("prom/prometheus:")
    assert not _env(prometheus)
    config = yaml.safe_load(_mounted(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["grantflow-api"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    # Every replica, found by the service's name (one DNS answer per container).
    worker = jobs["grantflow-worker"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    assert worker["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 9464, "refresh_interval": "30s"}
    ]
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    assert str(grafana["image"]).startswith("grafana/grafana:")
    env = _env(grafana)
    assert set(env) <= GRAFANA_ENV, f"not grafana.ini keys: {sorted(set(env) - GRAFANA_ENV)}"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "grantflow.yml").read_text())
    [provider] = providers["providers"]
    dashboards = [t for t, s in mounts.items() if s == ROOT / "deploy/grafana/grantflow.json"]
    assert dashboards, "deploy/grafana/grantflow.json is not mounted"
    assert Path(dashboards[0]).parent == Path(provider["options"]["path"])


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
    # The two databases' passwords, Temporal's and its schema job's, Grafana's admin's; each
    # app service's secret key and database URL.
    assert checked == 5 + 2 * len(APP_SERVICES)
