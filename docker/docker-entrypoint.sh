#!/bin/sh
# Container entry point of the vxplane controller image.
#
# With no arguments, or "controller [args...]": apply the database migrations, then run the
# controller (REST API + OpenFlow) in the foreground, exec-ed so it gets the signals. Anything else
# is run as given (e.g. `docker compose run controller vxplane db upgrade ...` or `sh`).
set -eu

API_LISTEN="${VXPLANE_API_LISTEN:-0.0.0.0:8080}"
OPENFLOW_LISTEN="${VXPLANE_OPENFLOW_LISTEN:-0.0.0.0:6653}"

if [ "$#" -eq 0 ] || [ "$1" = "controller" ]; then
    [ "$#" -gt 0 ] && shift
    : "${VXPLANE_DB_URL:?set VXPLANE_DB_URL to the controller database URL}"
    echo "docker-entrypoint: applying migrations" >&2
    vxplane db upgrade --db "$VXPLANE_DB_URL"
    echo "docker-entrypoint: starting controller (api $API_LISTEN, openflow $OPENFLOW_LISTEN)" >&2
    exec vxplane controller --db "$VXPLANE_DB_URL" \
        --api "$API_LISTEN" --openflow "$OPENFLOW_LISTEN" "$@"
fi

exec "$@"
