#!/usr/bin/env bash
# Build a Debian bookworm base image locally (debootstrap + docker import), for machines that
# cannot pull from an image registry (CI here). docker/Dockerfile takes it as PYTHON_IMAGE and
# DEBIAN_IMAGE; docker/local/ builds the Mosquitto, Prometheus and test stand-ins on it.
#
#   docker/local-base.sh [ARCH]        ARCH: amd64 (default) or arm64 (needs qemu-user-static)
#
# Prints the image name on stdout (progress on stderr). The tag carries a hash of every input
# (this script, suite, arch, packages, mirror, the host's CA bundle): an image with the same
# inputs is reused, so running it again costs a second.
#
# Environment: HOMESEC_BASE_MIRROR (default: the first Debian URI in this machine's apt
# sources), HOMESEC_BASE_CA (default /etc/ssl/certs/ca-certificates.crt: added to the image so
# pip/uv/apt trust what this machine trusts, e.g. a TLS-intercepting proxy's CA).
set -euo pipefail

arch=${1:-amd64}
suite=bookworm
packages=python3,python3-venv,ca-certificates
repo_name=homesec-local/debian
ca=${HOMESEC_BASE_CA:-/etc/ssl/certs/ca-certificates.crt}

log() { echo "local-base: $*" >&2; }

apt_mirror() {
    # deb822 (URIs: ...) or one-line (deb URL suite ...) sources; the first Debian archive wins
    local found
    found=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
        grep -vE 'security' | head -n 1 || true)
    if [ -z "$found" ]; then
        found=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' |
            grep -vE 'security' | head -n 1 || true)
    fi
    echo "${found:-http://deb.debian.org/debian}"
}

mirror=${HOMESEC_BASE_MIRROR:-$(apt_mirror)}
case "$arch" in amd64 | arm64) ;; *)
    log "unsupported arch $arch (amd64, arm64)"
    exit 2
    ;;
esac
[ -r "$ca" ] || {
    log "CA bundle $ca not readable"
    exit 2
}

inputs_hash=$(
    {
        sha256sum "$0" "$(dirname "$0")/rootfs_image.py" | cut -d' ' -f1
        echo "$suite $arch $packages $mirror"
        sha256sum "$ca" | cut -d' ' -f1
    } | sha256sum | cut -c1-12
)
image="$repo_name:$suite-$arch-$inputs_hash"

if docker image inspect "$image" >/dev/null 2>&1; then
    log "reusing $image (inputs unchanged)"
    docker tag "$image" "$repo_name:$suite-$arch"
    echo "$image"
    exit 0
fi

command -v debootstrap >/dev/null || {
    log "debootstrap missing: apt-get install debootstrap"
    exit 2
}
if [ "$arch" != "$(dpkg --print-architecture)" ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    log "no qemu-aarch64 binfmt handler: apt-get install qemu-user-static (and mount binfmt_misc)"
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/homesec-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
started=$(date +%s)
log "debootstrap $suite ($arch) from $mirror"
if ! debootstrap --variant=minbase --arch="$arch" --include="$packages" \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    exit 1
fi

# the host's trust store: kept across update-ca-certificates runs in later images
install -D -m 644 "$ca" "$rootfs/usr/local/share/ca-certificates/homesec-build-host.crt"
install -m 644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# the same mirror for apt inside the images; no downloaded packages or lists left behind
echo "deb $mirror $suite main" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/usr/share/doc/*/changelog* \
    "$rootfs"/usr/share/man/*
# as in Docker's Debian images: package scripts never start daemons during a build
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/90homesec-no-recommends"

tar -C "$rootfs" --numeric-owner -c -f "$work/layer.tar" .
rm -rf "$rootfs"
# an image archive with the architecture set (docker import ignores --platform on Docker 20.10)
python3 "$(dirname "$0")/rootfs_image.py" "$work/layer.tar" "$arch" "$image" "$work/image.tar" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env UV_SYSTEM_CERTS=1 \
    --label "org.homesec.base.inputs=$inputs_hash" \
    --label "org.homesec.base.mirror=$mirror"
docker load -q -i "$work/image.tar" >/dev/null
docker tag "$image" "$repo_name:$suite-$arch"
log "built $image in $(($(date +%s) - started)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
echo "$image"
