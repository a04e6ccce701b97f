"""Waits until a container's health check reports healthy (a dynamic resource).

The Docker provider can wait for health itself (``wait``), but when that wait runs out it fails
with a message that names neither the container nor the setting to raise, and the bridged
provider then treats the half-created container as one to replace. So the container is created
with ``wait`` off and this resource does the waiting:

- ``create``/``update`` poll ``docker inspect`` (over the same endpoint as the Docker provider)
  until ``State.Health.Status`` is ``healthy``, for at most ``timeout_seconds``;
- running out of time fails with a message naming the container, the setting that bounds the wait
  (``ms5:dbHealthTimeoutSeconds`` for the database) and ``docker logs``; the container is left
  running for diagnosis, and the next ``pulumi up`` simply waits again;
- a container that exited fails at once with its exit code; one reported ``unhealthy`` (or
  restarting) is waited for until the timeout, because a slow first initialisation can outlast the
  container's own health-check start period (which only changes when the container is replaced)
  and still finish; the timeout message then carries the last health-check output;
- ``update`` runs when the container was replaced (a new id), so every new container is waited for;
- ``delete`` does nothing: the resource owns no infrastructure.

The id is deterministic (``<container name>-health``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult

from ms5_components.lifecycle.read_only import ReadOnlyProvider

PROVIDER_VERSION = "1"
"""Bumped when the waiting logic changes, so the change shows as a diff."""
POLL_SECONDS = 1.0
"""Pause between two ``docker inspect`` calls."""

_INPUTS = (
    "docker_host",
    "container_name",
    "container_id",
    "timeout_seconds",
    "timeout_setting",
    "provider_version",
)


@dataclass(frozen=True, kw_only=True)
class ContainerHealthProps:
    """Inputs of :class:`ContainerHealth`, rebuilt from the engine's raw property dict."""

    docker_host: str
    container_name: str
    container_id: str
    timeout_seconds: int
    timeout_setting: str
    provider_version: str

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> ContainerHealthProps:
        return cls(
            docker_host=str(raw["docker_host"]),
            container_name=str(raw["container_name"]),
            container_id=str(raw["container_id"]),
            timeout_seconds=int(raw["timeout_seconds"]),
            timeout_setting=str(raw["timeout_setting"]),
            provider_version=str(raw.get("provider_version", PROVIDER_VERSION)),
        )

    def to_outputs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _INPUTS}


def _inspect(props: ContainerHealthProps) -> dict[str, Any]:
    from ms5_components.errors import ContainerHealthError
    from ms5_components.lifecycle.docker_cli import (
        DockerCliFailed,
        DockerCliMissing,
        DockerCliTimeout,
        run_docker,
    )

    try:
        out = run_docker(props.docker_host, "inspect", props.container_id)
    except DockerCliMissing:
        raise ContainerHealthError(
            f"cannot check the health of container {props.container_name}: the docker CLI is not "
            "on PATH. Install it and re-run `pulumi up`."
        ) from None
    except (DockerCliFailed, DockerCliTimeout) as exc:
        raise ContainerHealthError(
            f"cannot inspect container {props.container_name} on the Docker engine at "
            f"{props.docker_host}: {exc}. Check the engine (`docker info`) and re-run `pulumi up`."
        ) from None
    found = json.loads(out)
    if not isinstance(found, list) or not found or not isinstance(found[0], dict):
        raise ContainerHealthError(
            f"container {props.container_name} was not found on the Docker engine at "
            f"{props.docker_host}; re-run `pulumi up` to recreate it."
        )
    return found[0]


def _last_check(health: dict[str, Any]) -> str:
    log = health.get("Log") or []
    if not log:
        return "no check has run yet"
    last = log[-1]
    output = " ".join(str(last.get("Output", "")).split())
    return f"exit code {last.get('ExitCode')}: {output[:300] or '(no output)'}"


def wait_healthy(props: ContainerHealthProps) -> dict[str, Any]:
    """Poll until healthy; facts about the container, or ContainerHealthError with what to do."""
    import time

    from ms5_components.errors import ContainerHealthError

    name = props.container_name
    logs = f"The container is kept for diagnosis: `docker logs {name}`."
    deadline = time.monotonic() + props.timeout_seconds
    while True:
        container = _inspect(props)
        state = container.get("State") or {}
        health = state.get("Health")
        status = str(state.get("Status", "unknown"))
        if health is None:
            raise ContainerHealthError(
                f"container {name} has no health check, so its readiness cannot be waited for."
            )
        health_status = str(health.get("Status", "unknown"))
        if health_status == "healthy" and status == "running":
            return {"health_status": health_status}
        if status in ("exited", "dead"):
            raise ContainerHealthError(
                f"container {name} stopped (status {status}, exit code {state.get('ExitCode')}) "
                f"before it became healthy. {logs}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            restarts = container.get("RestartCount", 0)
            raise ContainerHealthError(
                f"container {name} did not become healthy within {props.timeout_seconds} s "
                f"({props.timeout_setting}); it is {status}, health {health_status}, restarted "
                f"{restarts} time(s), last health check {_last_check(health)}. A first "
                "initialisation (or a recovery) can take longer on a large or slow volume: raise "
                f"{props.timeout_setting} (`pulumi config set {props.timeout_setting} <seconds>`) "
                f"and run `pulumi up` again, which waits again. {logs}"
            )
        time.sleep(min(POLL_SECONDS, remaining))


class ContainerHealthProvider(ReadOnlyProvider[ContainerHealthProps]):
    """Dynamic provider of :class:`ContainerHealth`."""

    inputs = _INPUTS

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        timeout = news.get("timeout_seconds")
        if isinstance(timeout, (int, float)) and timeout <= 0:
            failures.append(
                CheckFailure("timeout_seconds", f"timeout_seconds must be positive, got {timeout}")
            )
        return CheckResult(news, failures)

    def parse(self, raw: dict[str, Any]) -> ContainerHealthProps:
        return ContainerHealthProps.from_raw(raw)

    def run(self, parsed: ContainerHealthProps) -> dict[str, Any]:
        return wait_healthy(parsed)

    def resource_id(self, parsed: ContainerHealthProps) -> str:
        return f"{parsed.container_name}-health"


@dataclass(frozen=True, kw_only=True)
class ContainerHealthArgs:
    """Inputs of :class:`ContainerHealth`. None of them replaces the resource; a change of
    any (a replaced container has a new id) waits again."""

    docker_host: str
    """Docker endpoint, the same the Docker provider uses."""
    container_name: pulumi.Input[str]
    """The container's name (for messages and the id)."""
    container_id: pulumi.Input[str]
    """The container's id: a new container is waited for again."""
    timeout_seconds: int
    """How long to wait for ``healthy``."""
    timeout_setting: str
    """The setting that sets ``timeout_seconds``, named in the timeout message."""


class ContainerHealth(pulumi.dynamic.Resource, module="ms5", name="ContainerHealth"):
    """Ready once its container reports healthy (see the module docstring)."""

    health_status: pulumi.Output[str]
    """``healthy`` once created."""

    def __init__(
        self, name: str, args: ContainerHealthArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ContainerHealthProvider(),
            name,
            {
                "docker_host": args.docker_host,
                "container_name": args.container_name,
                "container_id": args.container_id,
                "timeout_seconds": args.timeout_seconds,
                "timeout_setting": args.timeout_setting,
                "provider_version": PROVIDER_VERSION,
                "health_status": None,
            },
            opts,
        )
