#!/usr/bin/env bash
# Build the Orthanc-RT image (Dockerfile) with podman: no Docker engine, no image registry.
#   scripts/container-image.sh [TAG] [podman build options...]     (default tag orthanc-rt:latest)
# The `debian:bookworm` base is made from Debian's own packages (debootstrap) when podman
# does not have it yet, so a machine that reaches Debian's mirror and PyPI is enough.
# With a Docker engine and a registry, `docker build -t orthanc-rt .` does the same (docs/production.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-orthanc-rt:latest}"; shift || true
base="debian:bookworm"
mirror="${ORTHANC_RT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "[image] $tool is missing: scripts/install.sh --dev installs it" >&2; exit 1; }
done

if ! podman image exists "$base"; then
  start=$SECONDS
  root="$(mktemp -d "${TMPDIR:-/var/tmp}/orthanc-rt-base.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  echo "[image] base $base from $mirror (debootstrap --variant=minbase)"
  nice -n 10 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # The same suites as Debian's own image: security fixes and point-release updates.
  security="${mirror%/debian}/debian-security"
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf "$root"; trap - EXIT
  echo "[image] base $base made in $((SECONDS - start)) s"
fi

# This host's trusted CAs, for pip and npm while building (an inspecting proxy's CA among them).
ca="${ORTHANC_RT_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
secret=(); [ -s "$ca" ] && secret=(--secret "id=site-ca,src=$ca")
previous="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
start=$SECONDS
# chroot isolation: builds where the machine's cgroups refuse to start containers.
nice -n 10 podman build --isolation chroot --network host "${secret[@]}" -t "$tag" -f "$here/Dockerfile" "$@" "$here"
# The image this tag named before, and its layers no other image uses (gigabytes per rebuild otherwise).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true  # still used by a container: kept
fi
echo "[image] $tag built in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$tag") bytes"
