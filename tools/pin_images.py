"""Pin every image of a stack to a digest: ``./ms5 pin-images production``.

For each image setting (``ms5:*Image``) it takes the tag from the stack file (or the default), pulls
it with your Docker, reads the repository digest and writes ``repo:tag@sha256:...`` back into
``Pulumi.<stack>.yaml``, keeping comments. Review the diff, then commit it.

Nothing is written unless every image resolved: a failed pull, an unknown tag or an engine that
does not answer is reported (what failed, what to do) and the stack file is left as it was. The
file is replaced in one step (a temporary file renamed over it), never left half-written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ms5_components.settings import SPECS, parse_image
from ms5_components.stack_files import config_string, read_stack_config, stack_file

ROOT = Path(__file__).resolve().parent.parent
PULL_TIMEOUT_SECONDS = 900


class PinError(Exception):
    """One thing pin-images could not do, with what to do about it."""


class EngineDown(PinError):
    """No docker CLI, or the engine does not answer: every further pull would fail the same way."""


@dataclass(frozen=True)
class Pinned:
    key: str
    reference: str
    """``repo:tag@sha256:<digest>``."""


def _docker(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise EngineDown(
            "the docker CLI is not installed: install Docker Engine "
            "(https://docs.docker.com/engine/install/), then re-run"
        ) from None
    except subprocess.TimeoutExpired:
        raise PinError(
            f"`docker {' '.join(args)}` did not finish within {timeout:.0f} s: check the "
            "engine and the network to the registry, then re-run"
        ) from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


_ENGINE_DOWN = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
)


def resolve_digest(key: str, reference: str) -> str:
    """``repo:tag`` -> ``sha256:<hex>`` of the pulled image, via the docker CLI."""
    pulled = _docker(["pull", "--quiet", reference], timeout=PULL_TIMEOUT_SECONDS)
    if pulled.returncode != 0:
        message = _last_line(pulled.stderr or pulled.stdout)
        lowered = message.lower()
        if any(s in lowered for s in _ENGINE_DOWN):
            raise EngineDown(
                f"the Docker engine does not answer ({message}): start it (sudo systemctl "
                "start docker), check DOCKER_HOST and that your user may use it (docker info), "
                "then re-run"
            )
        if any(s in lowered for s in ("manifest unknown", "not found", "does not exist")):
            raise PinError(
                f"{key}: {reference} is not in its registry ({message}): correct the tag in the "
                "stack file (the registry's tag list names the versions that exist)"
            )
        if any(s in lowered for s in ("denied", "unauthorized", "authentication")):
            raise PinError(
                f"{key}: pulling {reference} was refused ({message}): log in with "
                "`docker login <registry>`, then re-run"
            )
        raise PinError(
            f"{key}: pulling {reference} failed ({message}): check the network to the "
            "registry and the engine (docker info), then re-run"
        )
    inspected = _docker(
        ["image", "inspect", "--format", "{{json .RepoDigests}}", reference], timeout=60
    )
    match = re.search(r"@(sha256:[0-9a-f]{64})", inspected.stdout)
    if inspected.returncode != 0 or not match:
        raise PinError(
            f"{key}: docker reported no repository digest for {reference} (an image built or "
            "imported locally has none): push it to a registry, or pull it from one, then re-run"
        )
    return match.group(1)


def plan(stack: str, root: Path = ROOT) -> tuple[Path, str, list[Pinned]]:
    """Resolve every image of ``stack``; raise :class:`PinError` listing every failure."""
    path = stack_file(root, stack)
    if not path.exists():
        names = sorted(p.name for p in root.glob("Pulumi.*.yaml"))
        raise PinError(f"{path.name} does not exist (stack files here: {', '.join(names)})")
    text = path.read_text(encoding="utf-8")
    try:
        config = read_stack_config(path)
    except ValueError as exc:
        raise PinError(f"{path.name} cannot be read: {exc}") from None
    failures: list[str] = []
    pinned: list[Pinned] = []
    for spec in SPECS:
        if not spec.key.endswith("Image"):
            continue
        key = spec.qualified
        current = config_string(config[key]) if key in config else str(spec.default)
        try:
            ref = parse_image(current)
        except ValueError as exc:
            failures.append(f"{key}: got {current!r} in {path.name}; {exc}")
            continue
        base = f"{ref.repository}:{ref.tag}"
        try:
            pinned.append(Pinned(key, f"{base}@{resolve_digest(key, base)}"))
        except EngineDown as exc:
            failures.append(str(exc))
            break
        except PinError as exc:
            failures.append(str(exc))
    if failures:
        raise PinError(
            f"{len(failures)} image(s) could not be pinned; {path.name} was not changed:\n"
            + "\n".join(f"  - {f}" for f in failures)
        )
    return path, text, pinned


def rewrite(text: str, pinned: list[Pinned]) -> str:
    """``text`` with each key set to its pinned reference (comments and order kept)."""
    for item in pinned:
        line = re.compile(rf"^(\s*){re.escape(item.key)}:[^#\n]*?(\s+#.*)?$", re.M)
        replacement = f"{item.key}: {item.reference}"

        def put(match: re.Match[str], replacement: str = replacement) -> str:
            return f"{match.group(1)}{replacement}{match.group(2) or ''}"

        if line.search(text):
            text = line.sub(put, text)
        else:
            if not re.search(r"^config:", text, re.M):
                text = text.rstrip("\n") + "\nconfig:\n"
            text = text.rstrip("\n") + f"\n  {replacement}\n"
    return text


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename: a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).chmod(path.stat().st_mode & 0o777)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pin(stack: str, root: Path = ROOT) -> int:
    path, text, pinned = plan(stack, root)
    for item in pinned:
        print(f"{item.key}: {item.reference}")
    write_atomically(path, rewrite(text, pinned))
    print(f"pin-images: wrote {len(pinned)} digest(s) into {path.name}; review the diff, commit it")
    return 0


def main(argv: list[str], root: Path = ROOT) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: ./ms5 pin-images STACK   (e.g. production)", file=sys.stderr)
        return 2
    try:
        return pin(argv[0], root)
    except PinError as exc:
        print(f"pin-images: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
