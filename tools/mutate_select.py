"""pytest plugin of ``./ms5 mutate``: leaves out the tests that evaluate the whole program.

Tests using the ``program`` fixture run the Pulumi program under mocks (about a second each) and
would run for nearly every mutant; the rules are pinned by the tests that call them directly.
tools/mutate.py loads this plugin (``-p mutate_select``) in mutmut's runs only.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = [item for item in items if "program" not in getattr(item, "fixturenames", ())]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
