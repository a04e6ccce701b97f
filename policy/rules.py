"""Policy rules as pure functions: (resource type, inputs) -> violation messages.

Messages name the resource's property and what to do; they never echo values (a value may be a
secret). ``__main__.py`` wires them into the CrossGuard pack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTAINER = "docker:index/container:Container"
PGDATA = "/var/lib/postgresql/data"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _is_database(props: Mapping[str, Any]) -> bool:
    image_env = " ".join(str(e) for e in props.get("envs") or [])
    command = props.get("command") or []
    return "POSTGRES_" in image_env or (bool(command) and command[0] == "postgres")


def pgdata_on_named_volume(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A database container keeps PGDATA on a named volume (an anonymous one is lost on replace)."""
    if resource_type != CONTAINER or not _is_database(props):
        return []
    for volume in props.get("volumes") or []:
        if volume.get("containerPath") == PGDATA:
            if volume.get("volumeName"):
                return []
            return [
                f"volumes: {PGDATA} is not on a named volume (volumeName); an anonymous volume "
                "or bind mount is lost or shared on replace. Mount a docker.Volume there."
            ]
    return [f"volumes: {PGDATA} has no volume; add a named docker.Volume mounted there."]


def ports_bound_to_loopback(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Published ports bind to loopback unless deliberately configured (ms5:bindAddress)."""
    if resource_type != CONTAINER:
        return []
    out = []
    for index, port in enumerate(props.get("ports") or []):
        if port.get("ip") not in LOOPBACK:
            out.append(
                f"ports[{index}].ip: published on a non-loopback address; bind it to 127.0.0.1 "
                "or front the host with a firewall and set ms5:bindAddress deliberately."
            )
    return out


def hardened_container(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No privileged containers; no-new-privileges; memory and CPU limits."""
    if resource_type != CONTAINER:
        return []
    out = []
    if props.get("privileged"):
        out.append("privileged: must be false.")
    if "no-new-privileges:true" not in (props.get("securityOpts") or []):
        out.append('securityOpts: add "no-new-privileges:true".')
    if not props.get("memory"):
        out.append("memory: set a memory limit (MiB).")
    if not props.get("cpus") and not props.get("cpuShares"):
        out.append("cpus: set a CPU limit.")
    return out


RULES = (pgdata_on_named_volume, ports_bound_to_loopback, hardened_container)
