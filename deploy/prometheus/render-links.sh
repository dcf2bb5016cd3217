#!/bin/sh
# Copy the Prometheus config and rule files with every alert link pointed at this stack's
# runbook and Grafana: Prometheus reads no environment, so the compose stack runs this at
# each start (`docker compose restart prometheus` after changing a rule or a URL).
#
#   render-links.sh IN_DIR OUT_DIR    IN_DIR holds prometheus.yml and rules/*.yml
#
# Each `runbook_url` keeps its anchor under SUNDIAL_RUNBOOK_URL and each `dashboard_url`
# its path under SUNDIAL_GRAFANA_URL. Unset or empty, they are this host's API (which
# serves the runbook) and Grafana, on the ports the stack publishes them on.
set -eu

in=$1
out=$2
SUNDIAL_RUNBOOK_URL=${SUNDIAL_RUNBOOK_URL:-http://localhost:${API_PORT:-8000}/runbook}
SUNDIAL_GRAFANA_URL=${SUNDIAL_GRAFANA_URL:-http://localhost:${GRAFANA_PORT:-3000}}
for name in SUNDIAL_RUNBOOK_URL SUNDIAL_GRAFANA_URL; do
    eval "url=\$$name"
    case $url in
        *[\"\\\ \#]*) echo "render-links: $name must be a URL without quotes, spaces or '#': $url" >&2; exit 1 ;;
        http://?*|https://?*) ;;
        *) echo "render-links: $name must start with http:// or https://: $url" >&2; exit 1 ;;
    esac
done
export SUNDIAL_RUNBOOK_URL="${SUNDIAL_RUNBOOK_URL%/}" SUNDIAL_GRAFANA_URL="${SUNDIAL_GRAFANA_URL%/}"

mkdir -p "$out/rules"
cp "$in/prometheus.yml" "$out/prometheus.yml"
for file in "$in"/rules/*.yml; do
    awk '
    # The text between `key` and the first `stop` after it, replaced by $name.
    function rebase(line, key, stop, name,   start, rest, cut) {
        start = index(line, key)
        if (start == 0) return line
        rest = substr(line, start + length(key))
        cut = index(rest, stop)
        if (cut == 0) return line
        return substr(line, 1, start - 1) key ENVIRON[name] substr(rest, cut)
    }
    {
        $0 = rebase($0, "runbook_url: \"", "#", "SUNDIAL_RUNBOOK_URL")
        print rebase($0, "dashboard_url: \"", "/d/", "SUNDIAL_GRAFANA_URL")
    }
    ' "$file" >"$out/rules/$(basename "$file")"
done
