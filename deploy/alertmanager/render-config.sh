#!/bin/sh
# Render alertmanager.yml with values from the environment (Alertmanager reads none).
#
#   render-config.sh [IN [OUT]]     IN defaults to alertmanager.yml beside this script,
#                                   OUT to standard output.
#
# Each line ending in `# env: VAR` gets $VAR as its value when VAR is set and not empty;
# every other line is copied as is. `true`/`false` stay booleans, anything else becomes a
# single-quoted YAML string. A container entrypoint can run, for example:
#   render-config.sh /etc/alertmanager/alertmanager.yml /tmp/alertmanager.yml &&
#     exec alertmanager --config.file=/tmp/alertmanager.yml
set -eu

in=${1:-$(dirname "$0")/alertmanager.yml}
out=${2:--}

render() {
    awk '
    match($0, /#[ ]*env:[ ]*[A-Z][A-Z0-9_]*[ ]*$/) {
        var = substr($0, RSTART)
        sub(/#[ ]*env:[ ]*/, "", var)
        sub(/[ ]*$/, "", var)
        value = ENVIRON[var]
        if (value != "" && match($0, /^[ ]*(- )?[A-Za-z_]+:[ ]/)) {
            key = substr($0, 1, RLENGTH)
            if (value != "true" && value != "false") {
                gsub(/\047/, "\047\047", value)
                value = "\047" value "\047"
            }
            print key value "  # env: " var
            next
        }
    }
    { print }
    ' "$in"
}

if [ "$out" = "-" ]; then
    render
else
    render >"$out.tmp"
    mv "$out.tmp" "$out"
fi
