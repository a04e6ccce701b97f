"""Which Docker engine the stack talks to when ``ms5:dockerHost`` is unset: the Docker CLI's.

The Docker CLI picks its engine in this order (after its ``--host``/``--context`` flags):
``DOCKER_HOST``; the context named by ``DOCKER_CONTEXT``; the ``currentContext`` of its config file
(``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``); the built-in ``default``
context, ``unix:///var/run/docker.sock``. A named context's endpoint is ``Endpoints.docker.Host``
in ``<config dir>/contexts/meta/<sha256 of the name>/meta.json``.

:func:`resolve_docker_host` follows the same order from an explicit environment and home
directory, so it is deterministic for a given environment and testable without Docker. The
settings module calls it (it stays the only reader of config); the Docker provider, the host
preflight and ``./ms5 deploy`` all use the one result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "unix:///var/run/docker.sock"
"""The Docker CLI's ``default`` context when nothing else is set (Linux)."""
DEFAULT_CONTEXT = "default"


class DockerEndpointError(ValueError):
    """The Docker CLI's configuration names a context that cannot be read."""


@dataclass(frozen=True)
class Endpoint:
    """The resolved engine endpoint and where it came from (for messages)."""

    host: str
    """Engine address (``unix://``, ``tcp://``, ``ssh://``, ``npipe://``)."""
    source: str
    """What chose it: ``ms5:dockerHost``, ``DOCKER_HOST``, ``DOCKER_CONTEXT=<name>``,
    ``currentContext <name> of <config.json>`` or ``the default``."""


def config_dir(environ: Mapping[str, str], home: Path) -> Path:
    """The Docker CLI's configuration directory: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    configured = environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else home / ".docker"


def context_host(name: str, directory: Path) -> str:
    """The docker endpoint of context ``name`` stored under ``directory`` (the config dir)."""
    if name == DEFAULT_CONTEXT:
        return DEFAULT_HOST
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = directory / "contexts" / "meta" / digest / "meta.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DockerEndpointError(
            f"the Docker context {name!r} does not exist (no {meta}); list contexts with "
            "`docker context ls`, or set ms5:dockerHost"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DockerEndpointError(
            f"cannot read the Docker context {name!r} ({meta}): {exc}"
        ) from None
    host = (
        (data.get("Endpoints") or {}).get("docker", {}).get("Host")
        if isinstance(data, dict)
        else None
    )
    if not isinstance(host, str) or not host:
        raise DockerEndpointError(
            f"the Docker context {name!r} ({meta}) has no docker endpoint; set ms5:dockerHost"
        )
    return host


def resolve_docker_host(configured: str, environ: Mapping[str, str], home: Path) -> Endpoint:
    """The engine the stack uses: ``configured`` (``ms5:dockerHost``) when set, else the CLI's."""
    if configured:
        return Endpoint(configured, "ms5:dockerHost")
    if environ.get("DOCKER_HOST"):
        return Endpoint(environ["DOCKER_HOST"], "DOCKER_HOST")
    directory = config_dir(environ, home)
    name = environ.get("DOCKER_CONTEXT", "")
    if name:
        return Endpoint(context_host(name, directory), f"DOCKER_CONTEXT={name}")
    config_file = directory / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = {}
    except (OSError, json.JSONDecodeError) as exc:
        raise DockerEndpointError(
            f"cannot read the Docker CLI config {config_file}: {exc}"
        ) from None
    current = config.get("currentContext") if isinstance(config, dict) else None
    if isinstance(current, str) and current and current != DEFAULT_CONTEXT:
        return Endpoint(
            context_host(current, directory), f"currentContext {current} of {config_file}"
        )
    return Endpoint(DEFAULT_HOST, "the default")
