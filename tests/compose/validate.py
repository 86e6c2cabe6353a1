"""Validates docker-compose.yml where `docker compose` is not installed.

Our own check, not the Compose project's: a JSON Schema (schema.json) of the part of the
Compose specification this file uses, strict about keys (a misspelt key fails), plus the
references the schema cannot see: every secret, volume and depends_on target a service
names is defined, and every `$` that is not compose interpolation is escaped as `$$`.
Prints the services on success; exits non-zero with the reasons otherwise.
"""
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml


def interpolations(value, path, problems):
    if isinstance(value, dict):
        for key, item in value.items():
            interpolations(item, f"{path}.{key}", problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            interpolations(item, f"{path}[{i}]", problems)
    elif isinstance(value, str):
        # `$$` is a literal dollar; `${NAME}` / `$NAME` are interpolated from the host.
        for match in re.finditer(r"\$(\$|\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}|[A-Za-z_][A-Za-z0-9_]*)?", value):
            if match.group(1) is None:
                problems.append(f"{path}: a lone `$` (write `$$` for a literal dollar)")


def main(compose_file, schema_file):
    document = yaml.safe_load(Path(compose_file).read_text())
    schema = json.loads(Path(schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    if not problems:
        services = document["services"]
        secrets = set(document.get("secrets", {}))
        volumes = set(document.get("volumes", {}))
        for name, service in services.items():
            for secret in service.get("secrets", []):
                secret = secret if isinstance(secret, str) else secret["source"]
                if secret not in secrets:
                    problems.append(f"services.{name}.secrets: `{secret}` is not defined under secrets")
            for volume in service.get("volumes", []):
                source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
                if source and not source.startswith((".", "/", "~")) and source not in volumes:
                    problems.append(f"services.{name}.volumes: named volume `{source}` is not defined under volumes")
            depends = service.get("depends_on", [])
            for other in depends if isinstance(depends, list) else depends.keys():
                if other not in services:
                    problems.append(f"services.{name}.depends_on: no service `{other}`")
        interpolations(document, "", problems)
    if problems:
        for problem in problems:
            print(f"compose-check: {compose_file}: {problem}", file=sys.stderr)
        return 1
    print("\n".join(document["services"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
