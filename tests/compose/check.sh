#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine: `docker-compose config -q`
# parses the file, checks it against the Compose schema and resolves
# interpolation. It reads the repo's file in place and writes nothing to the repo
# (the secrets file, secrets/mayfly.key, is not needed for validation).
#
# Installs Debian's docker-compose package (without recommends, so no engine)
# when no docker-compose is on PATH; that needs root.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
compose_file="$repo_root/docker-compose.yml"

say() { echo "compose-check: $*" >&2; }
die() { echo "compose-check: FAIL: $*" >&2; exit 1; }

[ -f "$compose_file" ] || die "$compose_file not found"

if ! command -v docker-compose >/dev/null; then
    say "installing Debian's docker-compose package"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends docker-compose; }
    if ! apt_install >/dev/null 2>&1; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt_install >/dev/null || die "apt-get install docker-compose failed"
    fi
    command -v docker-compose >/dev/null || die "docker-compose still not on PATH after installing it"
fi

# Validate the file exactly as committed.
docker-compose -f "$compose_file" config -q || die "docker-compose config rejected $compose_file"

# Both services must be there.
services="$(docker-compose -f "$compose_file" config --services)"
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

echo "compose-check: PASS: $(docker-compose version --short) validated docker-compose.yml (services: $(tr '\n' ' ' <<<"$services"| sed 's/ $//'))"
