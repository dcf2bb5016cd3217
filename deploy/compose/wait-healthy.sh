#!/bin/sh
# Wait until every container of the stack is healthy (or running, if it has no
# healthcheck): `make up` uses it because `up --wait` exists only in Compose v2.
#
#   wait-healthy.sh SECONDS COMPOSE-COMMAND...
#   e.g. wait-healthy.sh 300 docker-compose -p sundial -f deploy/compose/compose.yaml
#
# Exits 1 naming the containers that are not healthy in time, with their last log lines.
set -eu
timeout=$1
shift

status() {
    ids=$("$@" ps -q)
    [ -n "$ids" ] || return 0
    # name, then "healthy"/"starting"/"unhealthy" or, without a healthcheck, the state
    docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids \
        | sed 's#^/##'
}

deadline=$(( $(date +%s) + timeout ))
while :; do
    states=$(status "$@")
    waiting=$(printf '%s\n' "$states" | awk '$2 != "healthy" && $2 != "running"')
    if [ -n "$states" ] && [ -z "$waiting" ]; then
        printf '%s\n' "$states" | sort | awk '{printf "  %-40s %s\n", $1, $2}'
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "not healthy after ${timeout}s:" >&2
        printf '%s\n' "${waiting:-no containers}" | sed 's/^/  /' >&2
        printf '%s\n' "$waiting" | while read -r name _; do
            [ -n "$name" ] || continue
            echo "--- last log lines of $name" >&2
            docker logs --tail 20 "$name" >&2 2>&1 || true
        done
        exit 1
    fi
    sleep 2
done
