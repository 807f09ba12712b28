#!/bin/sh
# The `default` namespace grantflow runs in, created by the `temporal-namespace` job once the
# server answers (temporalio/admin-tools; samples-server's compose/scripts/create-namespace.sh).
# The temporalio/server image, unlike the deprecated auto-setup, creates no namespace.
# grantflow's search attributes (ProgrammeId, Stage) are added afterwards by `grantflow migrate`.
set -eu

address="${1:?usage: create-namespace.sh ADDRESS NAMESPACE RETENTION}"
namespace="${2:?namespace}"
retention="${3:?retention, e.g. 30d}"

attempt=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "temporal at $address not healthy after 60 tries" >&2
    exit 1
  fi
  sleep 2
done
if temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1; then
  echo "namespace $namespace exists"
else
  temporal operator namespace create --namespace "$namespace" --retention "$retention" \
    --address "$address"
  echo "namespace $namespace created"
fi
