"""pytest plugin of ``./ms5 mutate``: leaves out the tests that evaluate the whole program.

Tests that run the Pulumi program under mocks (the ``program`` fixture, or ``run_program`` from
``tests/harness.py`` directly) take about a second each, would run for nearly every mutant, and in
mutmut's forked runs can hang until the timeout whatever the mutant, which would count as a kill.
The rules are pinned by the tests that call them directly, so in mutation runs those tests are
deselected (``program`` fixture) or skipped when they reach ``run_program``. tools/mutate.py loads
this plugin (``-p mutate_select``) in mutmut's runs only; ``./ms5 test`` runs every test.
"""

from __future__ import annotations

from typing import NoReturn

import pytest

REASON = "evaluates the whole program: left out of mutation runs (tools/mutate_select.py)"


def _left_out(*_args: object, **_kwargs: object) -> NoReturn:
    pytest.skip(REASON)


def pytest_configure(config: pytest.Config) -> None:
    try:
        import harness
    except ImportError:  # not this repository's tests
        return
    # Test modules are imported after this hook, so `from harness import run_program` binds this.
    harness.run_program = _left_out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = [item for item in items if "program" not in getattr(item, "fixturenames", ())]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
