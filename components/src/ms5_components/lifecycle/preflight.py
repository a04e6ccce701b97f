"""Host preflight: is the Docker host fit to run the database? (a dynamic resource)

It is the first thing a ``pulumi up`` can fail on: the stack's Docker provider depends on it, so
no image pull or other Docker call runs before it, and a missing, unreachable or too old engine is
reported by its message rather than by a raw provider error. It runs again whenever what it
protects changes (image, memory limit, disk minimum, Docker endpoint). It checks, each with its own message:

- the Docker engine answers at the resolved endpoint (``ms5:dockerHost``, else the Docker CLI's:
  ``DOCKER_HOST``, then the current context) and is at least Docker Engine 20.10 (API 1.41);
- free space on Docker's data root is at least ``ms5:preflightMinFreeDiskGb``;
- the engine's host memory is at least the container's limit ``ms5:dbMemoryMb``, and its CPU
  count at least ``ms5:dbCpus`` (Docker refuses a larger CPU limit).

``check`` also refuses a change of PostgreSQL major version against an existing deployment at
preview time: the data directory of one major cannot be opened by another, and re-initialising
would lose data. The message carries the upgrade procedure.

``delete`` does nothing: the preflight owns no infrastructure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult

from ms5_components.lifecycle.read_only import ReadOnlyProvider

PROVIDER_VERSION = "3"
"""Bumped when the checks change, so a new provider logic shows as a diff."""

_INPUTS = (
    "docker_host",
    "min_free_disk_gb",
    "memory_mb",
    "cpus",
    "pg_major",
    "image",
    "provider_version",
)

UPGRADE_PROCEDURE = (
    "PostgreSQL major upgrades are never done in place by this program. Procedure: "
    "(1) take and verify a backup of the current database; "
    "(2) deploy the new major as a separate stack (or with a new data volume) and restore into it, "
    "or run pg_upgrade against a copy of the volume; "
    "(3) verify, then switch ms5:dbImage. To keep the current data, set ms5:dbImage back to the "
    "PostgreSQL {old} image."
)


@dataclass(frozen=True, kw_only=True)
class PreflightProps:
    """Inputs of :class:`HostPreflight`, rebuilt from the engine's raw property dict."""

    docker_host: str
    min_free_disk_gb: int
    memory_mb: int
    cpus: int
    pg_major: int
    image: str
    provider_version: str
    docker_host_source: str = "ms5:dockerHost"

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> PreflightProps:
        # The engine passes numbers as floats and adds "__"-prefixed keys.
        return cls(
            docker_host=str(raw["docker_host"]),
            min_free_disk_gb=int(raw["min_free_disk_gb"]),
            memory_mb=int(raw["memory_mb"]),
            cpus=int(raw.get("cpus", 1)),
            pg_major=int(raw["pg_major"]),
            image=str(raw["image"]),
            provider_version=str(raw.get("provider_version", PROVIDER_VERSION)),
            docker_host_source=str(raw.get("docker_host_source", "ms5:dockerHost")),
        )

    def to_outputs(self) -> dict[str, Any]:
        return {
            "docker_host_source": self.docker_host_source,
            **{name: getattr(self, name) for name in _INPUTS},
        }


MIN_ENGINE_VERSION = "20.10"
"""The oldest Docker Engine the program supports (Debian 12's ``docker.io`` is 20.10.24)."""
MIN_API_VERSION = (1, 41)
"""Its API version. Every container option the program sets is older than this; an engine below
it could silently drop one (as engines below API 1.44 drop ``healthcheck.start_interval``, which
the program therefore does not use)."""


def _docker(host: str, *args: str, timeout: float = 30.0, source: str = "ms5:dockerHost") -> str:
    """Run the docker CLI against ``host``; PreflightError with a clear message on failure."""
    from ms5_components.errors import PreflightError
    from ms5_components.lifecycle.docker_cli import (
        DockerCliFailed,
        DockerCliMissing,
        DockerCliTimeout,
        run_docker,
    )

    try:
        return run_docker(host, *args, timeout=timeout)
    except DockerCliMissing:
        raise PreflightError(
            "preflight: the docker CLI is not on PATH. Install Docker Engine "
            "(https://docs.docker.com/engine/install/) and re-run `pulumi up`."
        ) from None
    except DockerCliTimeout:
        raise PreflightError(
            f"preflight: the Docker engine at {host} (from {source}) did not answer within "
            f"{timeout:.0f} s. Check that it is running: `docker -H {host} info`."
        ) from None
    except DockerCliFailed as exc:
        raise PreflightError(
            f"preflight: the Docker engine at {host} (from {source}) is not reachable: {exc}. "
            "Start Docker (e.g. `sudo systemctl start docker`), or point ms5:dockerHost "
            "(or DOCKER_HOST / the Docker context when it is unset) at a running engine."
        ) from None


def _parse_api(version: str) -> tuple[int, int] | None:
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def check_engine_version(host: str, source: str) -> tuple[str, str]:
    """The engine's (version, API version); PreflightError when older than the minimum."""
    from ms5_components.errors import PreflightError

    out = _docker(
        host, "version", "--format", "{{.Server.Version}}|{{.Server.APIVersion}}", source=source
    ).strip()
    version, _, api = out.partition("|")
    found = _parse_api(api)
    minimum = ".".join(str(x) for x in MIN_API_VERSION)
    if found is None or found < MIN_API_VERSION:
        raise PreflightError(
            f"preflight: the Docker engine at {host} is version {version or 'unknown'} (API "
            f"{api or 'unknown'}); the program needs Docker Engine {MIN_ENGINE_VERSION} or newer "
            f"(API {minimum}), because older engines silently ignore container options it sets. "
            "Upgrade Docker Engine (https://docs.docker.com/engine/install/), or point "
            "ms5:dockerHost at a newer engine."
        )
    return version, api


def _free_disk_bytes(host: str, info: dict[str, Any], root_dir: str, image: str) -> int:
    """Free bytes on Docker's data root.

    ``statvfs`` when the engine runs on this machine (a unix socket and the engine's host name is
    ours); otherwise — Docker Desktop's VM, a forwarded socket, ssh:// or tcp:// — ``df`` inside a
    throwaway container that mounts the data root, so the right disk is measured.
    """
    import socket

    if host.startswith("unix://") and info.get("Name") == socket.gethostname():
        try:
            stat = os.statvfs(root_dir)
        except OSError:
            pass  # not visible from here after all: measure from inside the engine
        else:
            return stat.f_bavail * stat.f_frsize
    out = _docker(
        host,
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{root_dir}:/r:ro",
        image,
        "df",
        "-Pk",
        "/r",
        timeout=120.0,
    )
    fields = out.strip().splitlines()[-1].split()
    return int(fields[3]) * 1024


def run_checks(props: PreflightProps) -> dict[str, Any]:
    """All host checks; returns the measured facts, or raises PreflightError naming the check."""
    from ms5_components.errors import PreflightError

    version, api = check_engine_version(props.docker_host, props.docker_host_source)
    info = json.loads(
        _docker(
            props.docker_host, "info", "--format", "{{json .}}", source=props.docker_host_source
        )
    )
    mem_total_mb = int(info.get("MemTotal", 0)) // (1024 * 1024)
    host_cpus = int(info.get("NCPU", 0))
    root_dir = str(info.get("DockerRootDir") or "/var/lib/docker")
    if host_cpus and host_cpus < props.cpus:
        raise PreflightError(
            f"preflight: the Docker host has {host_cpus} CPU(s), fewer than the database "
            f"container's limit ms5:dbCpus={props.cpus}; Docker would refuse the container. "
            "Lower ms5:dbCpus or use a larger host."
        )
    if mem_total_mb < props.memory_mb:
        raise PreflightError(
            f"preflight: the Docker host has {mem_total_mb} MiB of memory, less than the "
            f"database container's limit ms5:dbMemoryMb={props.memory_mb}. Lower ms5:dbMemoryMb "
            "or use a larger host."
        )
    free_gb = _free_disk_bytes(props.docker_host, info, root_dir, props.image) / (1024**3)
    if free_gb < props.min_free_disk_gb:
        raise PreflightError(
            f"preflight: {free_gb:.1f} GiB free on Docker's data root {root_dir}, less than "
            f"ms5:preflightMinFreeDiskGb={props.min_free_disk_gb}. Free space (e.g. "
            "`docker system prune` of unused images) or lower the setting."
        )
    return {
        "docker_version": version,
        "docker_api_version": api,
        "docker_root_dir": root_dir,
        "host_memory_mb": mem_total_mb,
        "host_cpus": host_cpus,
        "free_disk_gb": round(free_gb, 1),
    }


class PreflightProvider(ReadOnlyProvider[PreflightProps]):
    """Dynamic provider of :class:`HostPreflight`."""

    inputs = _INPUTS

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        for name in ("min_free_disk_gb", "memory_mb", "pg_major"):
            value = news.get(name)
            if isinstance(value, (int, float)) and value <= 0:
                failures.append(CheckFailure(name, f"{name} must be positive, got {value}"))
        old_major, new_major = _olds.get("pg_major"), news.get("pg_major")
        if (
            isinstance(old_major, (int, float))
            and isinstance(new_major, (int, float))
            and int(old_major) != int(new_major)
        ):
            failures.append(
                CheckFailure(
                    "pg_major",
                    f"ms5:dbImage changes PostgreSQL {int(old_major)} to {int(new_major)} on an "
                    "existing data volume; refused (the server cannot open the other major's "
                    "data directory and re-initialising would lose data). "
                    + UPGRADE_PROCEDURE.format(old=int(old_major)),
                )
            )
        return CheckResult(news, failures)

    def parse(self, raw: dict[str, Any]) -> PreflightProps:
        return PreflightProps.from_raw(raw)

    def run(self, parsed: PreflightProps) -> dict[str, Any]:
        return run_checks(parsed)

    def resource_id(self, parsed: PreflightProps) -> str:
        return "ms5-preflight"


@dataclass(frozen=True, kw_only=True)
class HostPreflightArgs:
    """Inputs of :class:`HostPreflight`. None of them replaces the resource."""

    docker_host: str
    """Docker endpoint (``ms5:dockerHost``)."""
    min_free_disk_gb: int
    """Minimum free GiB on Docker's data root."""
    memory_mb: int
    """The database container's memory limit; the host must have at least this."""
    cpus: int
    """The database container's CPU limit; the host must have at least this many CPUs."""
    pg_major: int
    """PostgreSQL major of the image; a change against existing state is refused at preview."""
    image: str
    """Reference of the database image (``repo:tag[@digest]``), used for the free-disk probe on
    a remote engine. A reference, not the pulled image: the preflight runs before any image is
    pulled (the probe's ``docker run`` pulls it when needed)."""
    docker_host_source: str = "ms5:dockerHost"
    """What chose ``docker_host`` (named in messages; not compared in diffs)."""


class HostPreflight(pulumi.dynamic.Resource, module="ms5", name="HostPreflight"):
    """Checks the Docker host before the database starts (see the module docstring)."""

    docker_version: pulumi.Output[str]
    """Docker engine version found."""
    docker_api_version: pulumi.Output[str]
    """Docker Engine API version found (at least 1.41)."""
    host_memory_mb: pulumi.Output[int]
    """Memory of the Docker host (MiB)."""
    free_disk_gb: pulumi.Output[float]
    """Free GiB on Docker's data root when last checked."""
    pg_major: pulumi.Output[int]
    """PostgreSQL major accepted for this deployment."""

    def __init__(
        self, name: str, args: HostPreflightArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            PreflightProvider(),
            name,
            {
                "docker_host": args.docker_host,
                "min_free_disk_gb": args.min_free_disk_gb,
                "memory_mb": args.memory_mb,
                "cpus": args.cpus,
                "pg_major": args.pg_major,
                "image": args.image,
                "provider_version": PROVIDER_VERSION,
                "docker_host_source": args.docker_host_source,
                "docker_version": None,
                "docker_api_version": None,
                "docker_root_dir": None,
                "host_memory_mb": None,
                "host_cpus": None,
                "free_disk_gb": None,
            },
            opts,
        )
