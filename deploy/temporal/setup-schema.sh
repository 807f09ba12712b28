#!/bin/sh
# Temporal's schema on the temporal-db service, run by the `temporal-schema` job before the
# server starts (temporalio/admin-tools; the shape of samples-server's
# compose/scripts/setup-postgres.sh). Every step is idempotent: `create` ignores a database
# that exists, `setup-schema -v 0.0` only adds the version tables if missing, and
# `update-schema` applies the versions not applied yet, so the job runs on every
# `docker compose up` and after an upgrade of TEMPORAL_VERSION.
# The connection comes from SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER and SQL_PASSWORD
# (temporal-sql-tool's own variables, tools/sql/main.go in temporalio/temporal).
set -eu

schema=/etc/temporal/schema/postgresql/v12
setup() {  # DATABASE VERSIONED_SCHEMA_DIR
  temporal-sql-tool --db "$1" create
  temporal-sql-tool --db "$1" setup-schema -v 0.0
  temporal-sql-tool --db "$1" update-schema -d "$2"
}
setup temporal "$schema/temporal/versioned"
setup temporal_visibility "$schema/visibility/versioned"
echo "temporal schema is up to date"
