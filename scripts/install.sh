#!/usr/bin/env bash
# Install everything Orthanc-RT needs on Debian 12; safe to run again.
#   - Debian packages: Orthanc 1.10 + Python and DICOMweb plugins, dcmtk, Redis
#   - a virtualenv (.venv) built on Debian's python3.11, the one orthanc-python embeds
#   - the OpenTPS 2.0.0 fixes (MCsquare run bits, CRLF launcher) (docs/opentps-fixes.md)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ORTHANC_RT_VENV:-$here/.venv}"
dev="${1:-}"

apt_packages=(orthanc orthanc-python orthanc-dicomweb orthanc-postgresql dcmtk
              redis-server python3-venv python3-dev curl
              poppler-utils dicom3tools)  # pdftotext/pdftoppm and dciodvfy: the dose-check report's tests
# The container image's tools: podman builds it without a Docker engine, debootstrap makes its
# debian:bookworm base without a registry (scripts/container-image.sh, tests/integration/test_container_image.py).
[ "$dev" = "--dev" ] && apt_packages+=(podman debootstrap)
sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install] apt packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts a system Orthanc on 8042/4242 on install; we run our own instances.
  if command -v systemctl >/dev/null && systemctl is-active --quiet orthanc 2>/dev/null; then
    $sudo_cmd systemctl disable --now orthanc || true
  fi
  if [ -x /etc/init.d/orthanc ]; then $sudo_cmd /etc/init.d/orthanc stop >/dev/null 2>&1 || true; fi
fi

# pip prints one warning per package for this machine's unused find-links: keep
# its output only when it fails.
pip_quiet() {
  local log; log="$(mktemp)"
  if ! "$venv/bin/pip" "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

if [ ! -x "$venv/bin/python" ]; then
  echo "[install] virtualenv at $venv"
  /usr/bin/python3.11 -m venv "$venv"
fi
# One line per requirements file installed (its hash): re-run pip only for what changed.
stamp="$venv/.orthanc-rt-requirements"
req_files=("$here/requirements.txt")
[ "$dev" = "--dev" ] && req_files+=("$here/requirements-dev.txt")
for f in "${req_files[@]}"; do
  hash="$(sha256sum "$f" | cut -c1-16) $(basename "$f")"
  if ! grep -qxF "$hash" "$stamp" 2>/dev/null; then
    echo "[install] python packages from $(basename "$f")"
    pip_quiet install --upgrade pip
    pip_quiet install -r "$f"
    { grep -v " $(basename "$f")\$" "$stamp" 2>/dev/null || true; echo "$hash"; } >"$stamp.new"
    mv "$stamp.new" "$stamp"
  fi
done

# The project itself, editable, so `python -m worker` and the tests import it (not yet in the container
# image's first layer, which holds only what this script reads: its sources come in a later layer).
if [ -f "$here/pyproject.toml" ]; then
  (cd / && "$venv/bin/python" -c "import orthanc_rt" 2>/dev/null) || pip_quiet install --no-deps -e "$here"
fi
MPLBACKEND=Agg "$venv/bin/python" "$here/scripts/fix_opentps.py"

# The OHIF viewer: the prebuilt @ohif/app published on npm (its dist/ folder), pinned.
ohif_version="$(cat "$here/ohif-config/VERSION")"
ohif_dir="$here/.ohif/$ohif_version"
if [ ! -f "$ohif_dir/index.html" ]; then
  if ! command -v npm >/dev/null; then
    echo "[install] apt packages: npm"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends npm
  fi
  echo "[install] OHIF viewer @ohif/app@$ohif_version"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null 2>&1 && tar xzf ohif-app-*.tgz)
  mkdir -p "$ohif_dir" && cp -r "$tmp/package/dist/." "$ohif_dir/" && rm -rf "$tmp"
fi

# Test tools: a real browser for the viewer tests (Debian's Chromium, driven by Playwright).
if [ "$dev" = "--dev" ] && ! command -v chromium >/dev/null; then
  echo "[install] apt packages: chromium"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium
fi

# The test oracles (dicompyler-core needs pydicom < 3; pymedphys for gamma): a virtualenv of their own.
if [ "$dev" = "--dev" ]; then
  oracle="${ORTHANC_RT_ORACLE_VENV:-$here/.venv-oracle}"
  hash="$(sha256sum "$here/requirements-oracle.txt" | cut -c1-16)"
  if ! grep -qxF "$hash" "$oracle/.orthanc-rt-requirements" 2>/dev/null; then
    echo "[install] test oracle virtualenv at $oracle"
    [ -x "$oracle/bin/python" ] || /usr/bin/python3.11 -m venv "$oracle"
    log="$(mktemp)"
    if ! "$oracle/bin/pip" install -r "$here/requirements-oracle.txt" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; exit 1; fi
    rm -f "$log"
    echo "$hash" >"$oracle/.orthanc-rt-requirements"
  fi
fi
echo "[install] done"
