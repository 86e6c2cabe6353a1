#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine and without installing anything
# system-wide. With the Compose v2 plugin (`docker compose`) it runs `docker compose
# config -q`, which checks the file against the Compose schema and resolves
# interpolation. Without it, tests/compose/validate.py checks the file against our own
# schema of the part of the spec it uses (schema.json, strict about keys) and its
# references, in a venv under the target dir (hash-pinned requirements.txt).
# It reads the repo's file in place and writes nothing to the repo (the secrets file,
# secrets/mayfly.key, is not needed for validation).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
compose_file="$repo_root/docker-compose.yml"

say() { echo "compose-check: $*" >&2; }
die() { echo "compose-check: FAIL: $*" >&2; exit 1; }

[ -f "$compose_file" ] || die "$compose_file not found"

if docker compose version >/dev/null 2>&1; then
    tool="$(docker compose version --short) (docker compose config)"
    docker compose -f "$compose_file" config -q || die "docker compose config rejected $compose_file"
    services="$(docker compose -f "$compose_file" config --services)"
else
    say "no docker compose plugin here; checking against tests/compose/schema.json"
    target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
    venv="$target_dir/compose-venv"
    req="$script_dir/requirements.txt"
    mkdir -p "$target_dir"
    exec 9>"$target_dir/compose-venv.lock"
    flock 9
    stamp="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$stamp" ]; then
        say "creating $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "could not create a venv (on Debian: apt-get install python3-venv)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --require-hashes -r "$req" || { rm -rf "$venv"; die "pip install -r $req failed"; }
        echo "$stamp" >"$venv/.requirements.sha256"
    fi
    exec 9>&-
    tool="the schema check"
    services="$("$venv/bin/python" "$script_dir/validate.py" "$compose_file" "$script_dir/schema.json")" \
        || die "$compose_file does not validate"
fi

# Both services must be there.
for svc in postgres mayfly; do
    grep -qx "$svc" <<<"$services" || die "service $svc missing from $compose_file"
done

# The master key file must stay out of git and out of the image build context.
if git -C "$repo_root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo_root" check-ignore -q secrets/mayfly.key \
        || die "secrets/mayfly.key is not git-ignored (add /secrets/ to .gitignore)"
fi
grep -qx 'secrets/' "$repo_root/.dockerignore" 2>/dev/null \
    || die ".dockerignore does not exclude secrets/"

echo "compose-check: PASS: $tool validated docker-compose.yml (services: $(tr '\n' ' ' <<<"$services"| sed 's/ $//'))"
