"""The engine version the program needs, checked against the real engine (20.10 / API 1.41 here).

Older engines do not reject container options they do not know: they drop them. So the program
must use none that its minimum engine lacks, and the host preflight refuses an older engine.
"""

from __future__ import annotations

from typing import Any

import pytest

import ms5_dockerenv
from driver import CONTAINER, EngineDriver
from harness import run_program
from ms5_components.errors import PreflightError
from ms5_components.lifecycle import preflight
from stacks import overrides_for

pytestmark = pytest.mark.engine

# Container options and the API version that first honours them; engines before drop them.
NEWER_OPTIONS: dict[tuple[str, ...], tuple[int, int]] = {
    ("healthcheck", "startInterval"): (1, 44),
    ("networksAdvanced", "gwPriority"): (1, 48),
    ("mounts", "volumeOptions", "subpath"): (1, 45),
}


def _api(engine: ms5_dockerenv.Engine) -> tuple[int, int]:
    major, minor = engine.api_version.split(".")[:2]
    return int(major), int(minor)


def _uses(value: Any, path: tuple[str, ...]) -> bool:
    if not path:
        return value not in (None, "", "0s", 0)
    if isinstance(value, list):
        return any(_uses(v, path) for v in value)
    if isinstance(value, dict):
        return path[0] in value and _uses(value[path[0]], path[1:])
    return False


def test_this_engine_silently_drops_healthcheck_start_interval(
    engine: ms5_dockerenv.Engine, new_stack_name: Any
) -> None:
    """What makes the option dangerous: accepted without error, gone when read back."""
    assert _api(engine) < (1, 44)
    driver = EngineDriver(engine.api())
    name = f"ms5-{new_stack_name('ver')}-probe"
    inputs = {
        "name": name,
        "image": "prom/pushgateway:v1.11.0",
        "labels": [
            {"label": "ms5.stack", "value": name.removeprefix("ms5-").removesuffix("-probe")}
        ],
        "start": False,
        "healthcheck": {
            "tests": ["CMD", "true"],
            "interval": "5s",
            "startInterval": "2s",
        },
    }
    cid, state = driver.create_container(inputs)
    try:
        assert state["healthcheck"]["interval"] == "5s"
        assert state["healthcheck"]["startInterval"] == "0s"
    finally:
        driver.delete_container(cid, inputs)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_program_sets_no_container_option_newer_than_its_minimum_engine(stack: str) -> None:
    program = run_program(stack, overrides_for(stack))
    containers = program.by_type(CONTAINER)
    assert containers
    used = {
        (reg.name, ".".join(path), ".".join(map(str, api)))
        for reg in containers
        for path, api in NEWER_OPTIONS.items()
        if api > preflight.MIN_API_VERSION and _uses(reg.plain(path[0]), path[1:])
    }
    assert used == set()


def test_the_preflight_accepts_this_engine_and_names_its_version(
    engine: ms5_dockerenv.Engine,
) -> None:
    version, api = preflight.check_engine_version(engine.docker_host, "ms5:dockerHost")
    assert version == engine.version
    assert api == engine.api_version
    assert _api(engine) >= preflight.MIN_API_VERSION


def test_the_preflight_refuses_an_engine_older_than_the_minimum(
    engine: ms5_dockerenv.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same real engine against a minimum above it: the check's message, not a raw error."""
    monkeypatch.setattr(preflight, "MIN_API_VERSION", (1, 44))
    monkeypatch.setattr(preflight, "MIN_ENGINE_VERSION", "25.0")
    with pytest.raises(PreflightError) as failure:
        preflight.check_engine_version(engine.docker_host, "ms5:dockerHost")
    message = str(failure.value)
    assert engine.version in message
    assert "25.0" in message
    assert "API 1.44" in message
    assert engine.docker_host in message
