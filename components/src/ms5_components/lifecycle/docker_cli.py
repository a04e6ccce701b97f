"""The docker CLI, run against one engine, for the dynamic providers that read the Docker host.

``DOCKER_HOST`` is set to the resolved endpoint and ``DOCKER_CONTEXT`` removed, so the CLI talks
to exactly the engine the Docker provider uses (``DOCKER_HOST`` wins over any context in the
CLI's own order, and no context variable is left to disagree).
"""

from __future__ import annotations


class DockerCliMissing(Exception):
    """The docker CLI is not on PATH."""


class DockerCliTimeout(Exception):
    """The docker CLI did not finish in time."""


class DockerCliFailed(Exception):
    """The docker CLI exited with an error; ``str()`` is its last line of output."""


def run_docker(host: str, *args: str, timeout: float = 30.0) -> str:
    """stdout of ``docker ARGS`` against ``host``; one of the three exceptions above otherwise."""
    import os
    import shutil
    import subprocess

    exe = shutil.which("docker")
    if exe is None:
        raise DockerCliMissing("docker")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
    env["DOCKER_HOST"] = host
    try:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise DockerCliTimeout(f"{timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DockerCliFailed(detail[-1] if detail else f"exit code {done.returncode}")
    return done.stdout
