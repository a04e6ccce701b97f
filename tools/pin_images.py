"""Pin every image of a stack to a digest: ``./ms5 pin-images production``.

For each image setting (``ms5:*Image``) it takes the tag from the stack file (or the default), pulls
it with your Docker, reads the repository digest and writes ``repo:tag@sha256:...`` back into
``Pulumi.<stack>.yaml``, keeping comments. Review the diff, then commit it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from ms5_components.settings import NAMESPACE, SPECS, parse_image

ROOT = Path(__file__).resolve().parent.parent


def resolve_digest(reference: str) -> str:
    """``repo:tag`` -> ``sha256:<hex>`` of the pulled image, via the docker CLI."""
    subprocess.run(["docker", "pull", "--quiet", reference], check=True)
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", reference],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"@(sha256:[0-9a-f]{64})", out)
    if not match:
        raise SystemExit(f"pin-images: docker reported no repository digest for {reference}")
    return match.group(1)


def pin(stack: str, root: Path = ROOT) -> int:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SystemExit(f"pin-images: {path.name} does not exist")
    text = path.read_text()
    config = (yaml.safe_load(text) or {}).get("config") or {}
    for spec in SPECS:
        if not spec.key.endswith("Image"):
            continue
        key = f"{NAMESPACE}:{spec.key}"
        current = str(config.get(key, spec.default))
        ref = parse_image(current)
        base = f"{ref.repository}:{ref.tag}"
        digest = resolve_digest(base)
        pinned = f"{base}@{digest}"
        print(f"{key}: {pinned}")
        line = re.compile(rf"^(\s*){re.escape(key)}:.*$", re.M)
        if line.search(text):
            text = line.sub(rf"\g<1>{key}: {pinned}", text)
        else:
            text = text.rstrip("\n") + f"\n  {key}: {pinned}\n"
    path.write_text(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: pin_images.py STACK")
    raise SystemExit(pin(sys.argv[1]))
