"""Print the Docker engine a stack's program will use: ``python tools/docker_host.py STACK``.

``./ms5 deploy`` runs it to check that engine before ``pulumi up``. The resolution is the
program's own (``ms5_components.docker_endpoint``): ``ms5:dockerHost`` from ``Pulumi.<STACK>.yaml``
(where ``pulumi config set`` writes it) or the project default, else the Docker CLI's engine
(``DOCKER_HOST``, then the current Docker context, else ``unix:///var/run/docker.sock``).

Prints ``<host>\\t<what chose it>``; on a bad value prints the reason to stderr and exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from ms5_components.docker_endpoint import DockerEndpointError, resolve_docker_host
from ms5_components.settings import NAMESPACE, SPECS_BY_KEY

ROOT = Path(__file__).resolve().parent.parent
KEY = f"{NAMESPACE}:dockerHost"


def configured_host(stack: str, root: Path = ROOT) -> str:
    """``ms5:dockerHost`` as the program will see it: the stack file's value or the default."""
    stack_file = root / f"Pulumi.{stack}.yaml"
    data = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else None
    value = ((data or {}).get("config") or {}).get(KEY)
    if value is None:
        value = SPECS_BY_KEY["dockerHost"].default
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/docker_host.py STACK", file=sys.stderr)
        return 2
    spec = SPECS_BY_KEY["dockerHost"]
    try:
        endpoint = resolve_docker_host(configured_host(argv[0]), os.environ, Path.home())
    except DockerEndpointError as exc:
        print(f"{KEY} is unset, so the Docker CLI's engine is used, but {exc}", file=sys.stderr)
        return 1
    try:
        spec.parse(endpoint.host)
    except ValueError as exc:
        print(f"{endpoint.source} gives {endpoint.host!r}: {exc}", file=sys.stderr)
        return 1
    print(f"{endpoint.host}\t{endpoint.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
