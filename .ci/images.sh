#!/usr/bin/env bash
# Stand-in container images for CI on machines with Docker but no image registry.
#
# Installs Docker (+ docker-compose 1.29, debootstrap) when missing, starts dockerd when
# nothing answers, bootstraps a Debian bookworm rootfs as `sundial-ci/debian:<hash>`, and
# builds every recipe under .ci/images/NAME FROM it as `sundial-ci/NAME:<hash>`. The tag
# is a hash of the recipe (this script, the recipe's files, the host CA bundle), so an
# unchanged recipe is never rebuilt and a changed one always is. Set
# SUNDIAL_CI_REBUILD_IMAGES=1 to rebuild anyway.
#
# Writes the image names as shell assignments to $SUNDIAL_CI_IMAGES_ENV (default
# var/ci-images.env) for `.ci/run` and the smoke test to source.
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPES=.ci/images
OUT=${SUNDIAL_CI_IMAGES_ENV:-var/ci-images.env}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

say() { printf 'images: %s\n' "$*" >&2; }

ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
        || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

ensure_daemon() {
    docker info >/dev/null 2>&1 && return 0
    say "starting dockerd (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    say "dockerd did not answer within 60s; see /var/log/dockerd.log"
    tail -n 20 /var/log/dockerd.log >&2 || true
    return 1
}

# The first deb URI of the machine's apt sources (deb822 or one-line format).
apt_mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -m1 /debian$ || true)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -m1 /debian/\\?$ || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

build_base() {
    local mirror=$1 tag=$2 root
    image_exists "$tag" && [ -z "${SUNDIAL_CI_REBUILD_IMAGES:-}" ] && return 0
    say "debootstrap bookworm from $mirror -> $tag"
    root=$(mktemp -d)
    $SUDO debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
        || { tail -n 20 /tmp/debootstrap.log >&2; return 1; }
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" \
        | $SUDO tee "$root/etc/apt/sources.list" >/dev/null
    # Keep images small: no docs, no apt lists left behind by later layers.
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
        | $SUDO tee "$root/etc/dpkg/dpkg.cfg.d/01-nodoc" >/dev/null
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    $SUDO tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
    $SUDO rm -rf "$root"
}

build_recipe() {
    local name=$1 base=$2 tag=$3 ctx
    image_exists "$tag" && [ -z "${SUNDIAL_CI_REBUILD_IMAGES:-}" ] && return 0
    say "building $tag"
    ctx=$(mktemp -d)
    cp -r "$RECIPES/$name/." "$ctx/"
    # Package downloads inside builds go through the same TLS interception as the host.
    if [ -f "$CA_BUNDLE" ]; then cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"; else : >"$ctx/ca-certificates.crt"; fi
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.log" \
        || { cat "$ctx/build.log" >&2; rm -rf "$ctx"; return 1; }
    rm -rf "$ctx"
}

main() {
    ensure_tools
    ensure_daemon
    local mirror base_hash base name tag var ca=/dev/null
    [ -f "$CA_BUNDLE" ] && ca=$CA_BUNDLE
    mirror=$(apt_mirror)
    base_hash=$(printf '%s\n' "$mirror" | cat - "$0" | sha256sum | cut -c1-12)
    base="sundial-ci/debian:bookworm-$base_hash"
    build_base "$mirror" "$base"
    docker tag "$base" sundial-ci/debian:bookworm

    mkdir -p "$(dirname "$OUT")"
    : >"$OUT.tmp"
    for dir in "$RECIPES"/*/; do
        name=$(basename "$dir")
        tag="sundial-ci/$name:$(printf '%s\n' "$base_hash" | hash_of - "$ca" $(find "$dir" -type f | sort))"
        build_recipe "$name" "$base" "$tag"
        docker tag "$tag" "sundial-ci/$name:latest"
        var=$(printf 'SUNDIAL_CI_IMAGE_%s' "$name" | tr '[:lower:]' '[:upper:]')
        printf '%s=%s\n' "$var" "$tag" >>"$OUT.tmp"
    done
    mv "$OUT.tmp" "$OUT"
    say "stand-ins ready (names in $OUT)"
}

main "$@"
