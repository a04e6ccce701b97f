"""Fixtures for the mocked-program tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from harness import ProgramRun, run_program

# A pinned reference of the right shape. Pulumi.production.yaml carries the digest that
# `./ms5 pin-images production` resolved on a machine with Docker; offline tests need one that does
# not depend on that file's state.
PRODUCTION_TEST_IMAGE = "timescale/timescaledb:2.19.3-pg17@sha256:" + "0" * 64


def overrides_for(stack: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if stack == "production":
        base["ms5:dbImage"] = PRODUCTION_TEST_IMAGE
    base.update(extra or {})
    return base


@pytest.fixture
def program() -> Callable[..., ProgramRun]:
    """Evaluate the real program for a stack under mocks: ``program("production", {...})``."""

    def run(stack: str, extra: dict[str, Any] | None = None, **kwargs: Any) -> ProgramRun:
        return run_program(stack, overrides_for(stack, extra), **kwargs)

    return run
