#!/usr/bin/env bash
# nginx `auth_request` in front of a tiny upstream, asking `mayfly gateway` (README's
# nginx config), against a throwaway `mayfly serve` (tests/lib/live-server.sh). nginx is
# installed with apt when missing, as CI installs its other tools; the check never skips.
#
# Usage: tests/gateway/run.sh [PATH_TO_MAYFLY_BINARY]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/../../target}"
bin="${1:-$target_dir/debug/mayfly}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "gateway: installing nginx with apt" >&2
    # No service start: the check runs its own nginx on a random port.
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q --no-install-recommends nginx >&2 \
        || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q --no-install-recommends nginx >&2; } \
        || { echo "gateway: FAIL: cannot install nginx" >&2; exit 1; }
fi
export NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
export MAYFLY_BIN="$bin"
# The venv of tests/interop (pyseto's closure) has `cryptography`, for DPoP proofs.
exec bash "$here/../lib/live-server.sh" gateway "$here/../interop/requirements.txt" \
    "$bin" "$here/check_nginx.py"
