#!/usr/bin/env bash
# Independent-implementation interop check: pyseto verifies the tokens and key set of a
# throwaway `mayfly serve` (tests/interop/verify_pyseto.py, via tests/lib/live-server.sh).
#
# Usage: tests/interop/run.sh [PATH_TO_MAYFLY_BINARY]
#   default binary: ${CARGO_TARGET_DIR:-<repo>/target}/debug/mayfly
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/../../target}"
exec bash "$here/../lib/live-server.sh" interop "$here/requirements.txt" \
    "${1:-$target_dir/debug/mayfly}" "$here/verify_pyseto.py"
