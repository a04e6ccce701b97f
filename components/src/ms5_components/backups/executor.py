"""Where the backup script runs: next to the server, with the server's own tools.

- :class:`DockerExecutor` (production): ``docker exec`` into the database container through the
  stack's Docker engine (``ms5:dockerHost``), as the ``postgres`` user, over the server's local
  socket. The client tools are the image's, so never older than the server, and the machine
  running Pulumi needs no PostgreSQL tools.
- :class:`ChrootExecutor`: a server running from a local root file system (``chroot``), e.g.
  the project's Debian test root; same commands, same script.

An executor is described by plain data (:func:`from_spec`), so a dynamic provider can carry it in
its inputs. Environment values (passwords included) reach the command through the process
environment, never its arguments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ms5_components.errors import BackupError


class Executor(Protocol):
    def command(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The full command line and process environment that run ``argv`` next to the server."""
        ...

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` next to the server with ``env`` added; never raises for an exit code."""
        ...

    def server_exists(self) -> bool:
        """Whether there is a server to back up (False on a first deploy)."""
        ...

    def describe(self) -> str: ...


def _run(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(
            f"{what}: did not finish within {timeout:.0f} s (ms5:backupTimeoutSeconds)"
        ) from None
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {argv[0]}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class DockerExecutor:
    docker_host: str
    container: str
    user: str = "postgres"

    def _docker(self) -> str:
        exe = shutil.which("docker")
        if exe is None:
            raise BackupError(
                "backup: the docker CLI is not on PATH. Install Docker Engine "
                "(https://docs.docker.com/engine/install/) and re-run `pulumi up`."
            )
        return exe

    def command(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        names: list[str] = []
        for key in sorted(env):
            names += ["-e", key]  # the value comes from the CLI's environment, not argv
        full = [self._docker(), "exec", "-u", self.user, *names, self.container, *argv]
        return full, {**os.environ, **env, "DOCKER_HOST": self.docker_host}

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        full, process_env = self.command(argv, env)
        return _run(full, process_env, timeout, f"container {self.container}")

    def server_exists(self) -> bool:
        done = _run(
            [self._docker(), "container", "inspect", "-f", "{{.State.Running}}", self.container],
            {**os.environ, "DOCKER_HOST": self.docker_host},
            60.0,
            f"container {self.container}",
        )
        if done.returncode == 0:
            return True
        message = (done.stderr or done.stdout).strip()
        if "no such container" in message.lower() or "no such object" in message.lower():
            return False
        raise BackupError(
            f"backup: cannot ask the Docker engine at {self.docker_host} about container "
            f"{self.container} (ms5:dockerHost): {message.splitlines()[-1] if message else ''}"
        )

    def describe(self) -> str:
        return f"container {self.container} at {self.docker_host}"


@dataclass(frozen=True, kw_only=True)
class ChrootExecutor:
    root: str
    user: str = "postgres"
    path: str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def command(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        full = [
            chroot,
            self.root,
            "/usr/bin/setpriv",
            f"--reuid={self.user}",
            f"--regid={self.user}",
            "--init-groups",
            "--",
            *argv,
        ]
        return full, {"PATH": self.path, "LANG": "C.UTF-8", "HOME": "/", "TZ": "UTC", **env}

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        full, process_env = self.command(argv, env)
        return _run(full, process_env, timeout, f"root {self.root}")

    def server_exists(self) -> bool:
        return Path(self.root).is_dir()

    def describe(self) -> str:
        return f"root file system {self.root}"


def from_spec(spec: Mapping[str, Any]) -> Executor:
    """An executor from its plain description (a dynamic resource's ``executor`` input)."""
    kind = spec.get("kind")
    if kind == "docker":
        return DockerExecutor(
            docker_host=str(spec["dockerHost"]),
            container=str(spec["container"]),
            user=str(spec.get("user") or "postgres"),
        )
    if kind == "chroot":
        return ChrootExecutor(root=str(spec["root"]), user=str(spec.get("user") or "postgres"))
    raise BackupError(f"backup: unknown executor kind {kind!r} (expected docker or chroot)")


def check_spec(spec: object) -> str | None:
    """What is wrong with an executor description, or None."""
    if not isinstance(spec, Mapping):
        return "expected an object with kind docker or chroot"
    if spec.get("kind") == "docker":
        missing = [k for k in ("dockerHost", "container") if not spec.get(k)]
    elif spec.get("kind") == "chroot":
        missing = [k for k in ("root",) if not spec.get(k)]
    else:
        return f"kind {spec.get('kind')!r}: expected docker or chroot"
    return f"missing {', '.join(missing)}" if missing else None
