"""The one configuration object. Everything comes from the environment (or a `.env` file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Signs the pages' CSRF tokens; refused outside development.
DEV_SECRET = "grantflow-development-secret"  # noqa: S105


class Settings(BaseSettings):
    """grantflow's settings. `TEMPORAL_ADDRESS` and `DATABASE_URL` select real servers;
    without them every command uses the embedded servers of the stack under `GRANTFLOW_HOME`."""

    model_config = SettingsConfigDict(env_prefix="GRANTFLOW_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    home: Path = Path(".grantflow")
    log_format: Literal["console", "json"] = "console"
    log_level: str = "info"
    secret_key: str = DEV_SECRET

    temporal_address: str | None = Field(default=None, validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    task_queue: str = "grantflow"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # How many processes `grantflow api` serves with (uvicorn's process manager above 1): one
    # core's worth of requests each.
    api_processes: int = Field(default=1, ge=1)
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    postgres_port: int = 54329
    # Where history entries link to: the embedded dev server's UI unless set (a cluster's UI).
    temporal_ui_url: str | None = None
    # Where the links in e-mails (confirm, set or reset a password) point: the pages' public
    # address. Never taken from a request's Host header, which a client chooses.
    public_url: str | None = None

    max_body_bytes: int = 1_000_000
    # How often a request waiting for its Update's answer asks the server which task of the
    # workflow waits for a worker; the same task still waiting at the next look means no worker
    # took it up, and the caller gets 503 instead of a wait with no end (so after about twice
    # this; grantflow/services/updates.py).
    worker_answer_seconds: float = Field(default=10.0, gt=0)

    # Metrics and traces (grantflow/observability/). The API serves /metrics on its own port;
    # a worker serves the Temporal SDK's metrics on a port of its own, off unless set, so that
    # two stacks on one machine (a `make run` beside the tests) never fight over it.
    metrics: bool = True
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The domain's gauges are read from PostgreSQL at most this often, however often scraped.
    metrics_cache_seconds: float = Field(default=15.0, ge=0)
    # Traces go to this OTLP/HTTP collector when set (the OpenTelemetry SDK's own variable).
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    # A span per SQL statement too (a dozen per submission): for a hunt, not all the time.
    trace_sql: bool = False

    # Notifications go out by e-mail when smtp_host is set, to the log otherwise.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_from: str = "grantflow@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.env != "development" and self.secret_key == DEV_SECRET:
            raise ValueError("GRANTFLOW_SECRET_KEY must be set outside development")
        return self

    @property
    def ui_url(self) -> str:
        """The Temporal Web UI's base URL (`GRANTFLOW_TEMPORAL_UI_URL`, else the dev server's)."""
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")

    @property
    def pages_url(self) -> str:
        """The pages' base URL (`GRANTFLOW_PUBLIC_URL`, else the API's own address)."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def runtime_file(self) -> Path:
        return self.home / "runtime.json"

    def _running_stack(self) -> dict[str, Any] | None:
        """The addresses a running `grantflow dev` wrote, None when there is none: a file left
        behind by a killed stack names a process that is gone, and its ports answer nobody."""
        try:
            runtime: dict[str, Any] = json.loads(self.runtime_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(int(runtime["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        except (KeyError, TypeError, ValueError):
            return None
        return runtime

    def resolved(self) -> Settings:
        """These settings with the addresses of a running `grantflow dev` filled in where the
        environment names no real server."""
        if self.temporal_address and self.database_url:
            return self
        runtime = self._running_stack()
        if runtime is None:
            missing = [
                n
                for n, v in (
                    ("TEMPORAL_ADDRESS", self.temporal_address),
                    ("DATABASE_URL", self.database_url),
                )
                if not v
            ]
            raise RuntimeError(
                f"no running grantflow stack under {self.home.resolve()} and {', '.join(missing)} "
                "not set: start one with `make run` (or `grantflow dev`), or set them"
            )
        return self.model_copy(
            update={
                "temporal_address": self.temporal_address or runtime["temporal_address"],
                "database_url": self.database_url or runtime["database_url"],
            }
        )
