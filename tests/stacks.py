"""Stack overrides shared by the mocked-program tests, the rehearsal and tools/gen_docs.py."""

from __future__ import annotations

from typing import Any

PRODUCTION_TEST_IMAGE = "timescale/timescaledb:2.19.3-pg17@sha256:" + "0" * 64
"""A pinned reference of the right shape. Pulumi.production.yaml carries the digest that
`./ms5 pin-images production` resolved on a machine with Docker; offline tests must not depend on
that file's state."""


def overrides_for(stack: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config overrides that make ``stack`` evaluable offline, plus ``extra``."""
    from ms5_components.settings import SPECS, parse_image

    base: dict[str, Any] = {}
    if stack == "production":
        # Every image pinned: the database's to the known test reference, the others to their
        # default tag with a shape-valid digest.
        for spec in SPECS:
            if spec.key.endswith("Image") and isinstance(spec.default, str):
                ref = parse_image(spec.default)
                base[spec.qualified] = f"{ref.repository}:{ref.tag}@sha256:" + "0" * 64
        base["ms5:dbImage"] = PRODUCTION_TEST_IMAGE
    base.update(extra or {})
    return base
