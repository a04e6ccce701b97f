"""Host preflight: is the Docker host fit to run the database? (a dynamic resource)

Runs before the database container is created or replaced, and again whenever what it protects
changes (image, memory limit, disk minimum, Docker endpoint). It checks, each with its own message:

- the Docker engine answers at ``ms5:dockerHost`` (and its version);
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
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

PROVIDER_VERSION = "2"
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
        )

    def to_outputs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _INPUTS}


def _docker(host: str, *args: str, timeout: float = 30.0) -> str:
    """Run the docker CLI against ``host``; PreflightError with a clear message on failure."""
    from ms5_components.errors import PreflightError

    exe = shutil.which("docker")
    if exe is None:
        raise PreflightError(
            "preflight: the docker CLI is not on PATH. Install Docker Engine "
            "(https://docs.docker.com/engine/install/) and re-run `pulumi up`."
        )
    env = dict(os.environ, DOCKER_HOST=host)
    try:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise PreflightError(
            f"preflight: the Docker engine at {host} did not answer within {timeout:.0f} s "
            "(ms5:dockerHost). Check that it is running: `docker info`."
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit code {done.returncode}"
        raise PreflightError(
            f"preflight: the Docker engine at {host} is not reachable (ms5:dockerHost): {last}. "
            "Start Docker (e.g. `sudo systemctl start docker`) or fix ms5:dockerHost."
        )
    return done.stdout


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

    version = _docker(props.docker_host, "version", "--format", "{{.Server.Version}}").strip()
    info = json.loads(_docker(props.docker_host, "info", "--format", "{{json .}}"))
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
        "docker_root_dir": root_dir,
        "host_memory_mb": mem_total_mb,
        "host_cpus": host_cpus,
        "free_disk_gb": round(free_gb, 1),
    }


class PreflightProvider(ResourceProvider):
    """Dynamic provider of :class:`HostPreflight`."""

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

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in _INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        parsed = PreflightProps.from_raw(props)
        facts = run_checks(parsed)
        return CreateResult(id_="ms5-preflight", outs={**parsed.to_outputs(), **facts})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        parsed = PreflightProps.from_raw(news)
        facts = run_checks(parsed)
        return UpdateResult(outs={**parsed.to_outputs(), **facts})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the preflight only reads the host."""


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
    image: pulumi.Input[str]
    """Image used for the remote free-disk probe (already pulled)."""


class HostPreflight(pulumi.dynamic.Resource, module="ms5", name="HostPreflight"):
    """Checks the Docker host before the database starts (see the module docstring)."""

    docker_version: pulumi.Output[str]
    """Docker engine version found."""
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
                "docker_version": None,
                "docker_root_dir": None,
                "host_memory_mb": None,
                "host_cpus": None,
                "free_disk_gb": None,
            },
            opts,
        )
