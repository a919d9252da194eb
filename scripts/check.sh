#!/usr/bin/env bash
# The guard rails `./orthanc-rt test` runs before the tests (and CI with it): lint, layering, docs.
# Each prints only what is wrong; the first failure stops the run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${ORTHANC_RT_VENV:-$here/.venv}/bin"
cd "$here"
echo "[check] ruff"
"$bin/ruff" check --quiet .
echo "[check] import-linter (the layering contracts in pyproject.toml)"
"$bin/lint-imports" --no-cache >/tmp/orthanc-rt-lint-imports.$$ 2>&1 || { cat /tmp/orthanc-rt-lint-imports.$$; rm -f /tmp/orthanc-rt-lint-imports.$$; exit 1; }
rm -f /tmp/orthanc-rt-lint-imports.$$
echo "[check] mkdocs build --strict"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
"$bin/mkdocs" build --strict --quiet --site-dir "$site"
