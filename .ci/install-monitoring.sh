#!/bin/sh
# Install promtool (package `prometheus`) and amtool (package `prometheus-alertmanager`)
# for the rule, routing and dashboard tests. Idempotent: does nothing when both exist.
#
# The packages' maintainer scripts try to start their daemons through invoke-rc.d. A
# daemon left running would hold :9090/:9093 and outlive the CI job, so while installing
# we deny every service start with a policy-rc.d (exit 101, "action forbidden"), unless
# the machine already has one of its own.
set -eu

if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

daemon_pids() {
    pgrep -f '^/usr/bin/prometheus( |-alertmanager( |$)|$)' 2>/dev/null | sort || true
}

POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from .ci/install-monitoring.sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi

before=$(daemon_pids)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null

# If the machine's own policy allowed the packages to start their daemons, stop those
# (and only those: the pids that were not there before the install).
for pid in $(daemon_pids); do
    case " $(echo $before) " in
        *" $pid "*) ;;
        *)
            echo "install-monitoring: stopping daemon started by its package (pid $pid)" >&2
            $SUDO kill "$pid" || true
            ;;
    esac
done

promtool --version 2>&1 | head -n 1
amtool --version 2>&1 | head -n 1
