#!/usr/bin/env bash
# Third-party client check: every tests/authlib/test_*.py is a real OAuth client
# (Python's authlib) run against a throwaway `mayfly serve` (tests/lib/live-server.sh).
# Each gets ISSUER ADMIN_CLIENT_ID ADMIN_CLIENT_SECRET, sets up what it needs through
# the admin API, and exits non-zero on failure.
#
# Usage: tests/authlib/run.sh [PATH_TO_MAYFLY_BINARY]
#   default binary: ${CARGO_TARGET_DIR:-<repo>/target}/debug/mayfly
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/../../target}"
exec bash "$here/../lib/live-server.sh" authlib "$here/requirements.txt" \
    "${1:-$target_dir/debug/mayfly}" "$here"/test_*.py
