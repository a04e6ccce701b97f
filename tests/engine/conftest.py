"""Fixtures of the real-engine tests: the shared Docker engine, the stand-in images, and a
clean-up of every Docker object a test session created (by its unique project label)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

import ms5_dockerenv
from driver import remove_stack


@pytest.fixture(scope="session")
def engine() -> Iterator[ms5_dockerenv.Engine]:
    """The shared engine (started if needed; a missing engine fails, never skips) with the
    stand-in images built. Held by a lease: the last session to finish stops it."""
    with ms5_dockerenv.lease() as running:
        ms5_dockerenv.build_images(running)
        yield running


@pytest.fixture(scope="session")
def new_stack_name(engine: ms5_dockerenv.Engine) -> Iterator[object]:
    """A factory of unique stack names (Docker object prefixes ``ms5-<name>``); every object
    labelled with one is removed at the end."""
    made: list[str] = []

    def make(tag: str) -> str:
        name = f"ms5e{tag}{secrets.token_hex(2)}"
        made.append(name)
        return name

    yield make
    for name in made:
        remove_stack(engine.api(), name)
