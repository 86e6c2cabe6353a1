#!/usr/bin/env bash
# Runs the README's tour as a reader would: every ```sh block between "## A tour" and
# "## Layout", in order, in one bash (set -euo pipefail) with curl and jq, in a fresh
# temporary directory and HOME, with the given `mayfly` first on the PATH and a random
# port in MAYFLY_LISTEN (the variable the tour documents). A block preceded by an
# `<!-- not part of the tour: … -->` comment is skipped. The tour starts its own
# `mayfly serve &`; it is stopped when the tour ends.
#
# Usage: tests/tour/run.sh PATH_TO_MAYFLY_BINARY
set -euo pipefail

say() { echo "tour: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

bin="${1:?usage: tests/tour/run.sh PATH_TO_MAYFLY_BINARY}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
[ -x "$bin" ] || die "mayfly binary not found or not executable: $bin"
for tool in curl jq; do
    command -v "$tool" >/dev/null || die "$tool is needed (the tour uses it)"
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readme="$here/../../README.md"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/bin"
ln -s "$bin" "$work/bin/mayfly"

# The tour's blocks, each announced with its README line, into one script.
script="$work/tour.sh"
{
    echo 'set -euo pipefail'
    # The server the tour starts in the background ends with the tour.
    echo 'trap '\''kill $(jobs -p) 2>/dev/null || true'\'' EXIT'
    awk '
        /^## A tour/ { tour = 1; next }
        /^## Layout/ { tour = 0 }
        !tour { next }
        /^<!-- not part of the tour/ { skip = 1; next }
        /^```sh$/ && !inblock {
            inblock = 1; blocks++
            if (skip) { skipping = 1 } else { printf "echo \"tour: block at README.md:%d\" >&2\n", NR }
            next
        }
        /^```/ && inblock { inblock = 0; skip = 0; skipping = 0; next }
        inblock && !skipping { print; next }
        /[^[:space:]]/ && !inblock { skip = 0 }
    ' "$readme"
    echo 'echo "tour: every block ran" >&2'
} >"$script"
count="$(grep -c '^echo "tour: block at' "$script" || true)"
[ "$count" -ge 10 ] || die "found only $count tour blocks in README.md"
say "running $count blocks of README.md's tour with $bin"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))"

# A fresh machine: no MAYFLY_* settings, an empty HOME, mayfly on the PATH.
unset XDG_CONFIG_HOME
for var in $(env | awk -F= '/^MAYFLY_/ { print $1 }'); do unset "$var"; done
set +e
(
    cd "$work"
    HOME="$work/home" PATH="$work/bin:$PATH" MAYFLY_LISTEN="127.0.0.1:$port" \
        timeout 300 bash "$script" </dev/null
)
status=$?
set -e
if [ "$status" -ne 0 ]; then
    log="$work/mayfly-tour/mayfly.log"
    [ -f "$log" ] && { say "server log (last 20 lines):"; tail -n 20 "$log" >&2; }
    die "the tour failed (status $status); the block that failed is announced above"
fi
say "OK"
