"""The server settings the component computes, applied to a real PostgreSQL 17 + TimescaleDB.

For the staging and the production sizes, a fresh server starts with exactly the settings the
container's command line carries, and each one reads back from ``pg_settings`` as intended, with
``source = 'command line'``. A misspelled setting or a bad unit fails the start.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from harness import ProgramRun
from ms5_testenv import ServiceStartError

pytestmark = pytest.mark.integration

BUILD_DEPENDENT = {"timescaledb.telemetry_level"}
"""Settings that exist only in builds with telemetry (all official images; not Debian's)."""
_MEMORY = {"kB": 1, "MB": 1024, "GB": 1024 * 1024, "TB": 1024 * 1024 * 1024}
_TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _base(value: str, unit: str | None) -> float | str:
    """An expected value in pg_settings' own unit (e.g. '2GB' with unit '8kB' -> 262144)."""
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([a-zA-Z]+)?", value)
    if not unit or not match:
        return value
    number, suffix = float(match.group(1)), match.group(2)
    unit_match = re.fullmatch(r"(\d+)?([a-zA-Z]+)", unit)
    assert unit_match, unit
    factor, base_unit = int(unit_match.group(1) or 1), unit_match.group(2)
    if base_unit in _MEMORY:
        kb = number * _MEMORY[suffix or base_unit]
        return kb / (_MEMORY[base_unit] * factor)
    if base_unit in _TIME:
        ms = number * _TIME[suffix or base_unit]
        return ms / (_TIME[base_unit] * factor) if number >= 0 else number
    raise AssertionError(f"unit {unit} not handled")


def _command_settings(run: ProgramRun) -> dict[str, str]:
    command = run.by_name("timescaledb-container").plain("command")
    assert command[0] == "postgres"
    return dict(command[i + 1].split("=", 1) for i in range(1, len(command), 2))


@pytest.mark.parametrize(
    ("stack", "extra"),
    [
        ("staging", {"ms5:dbServerSettings": ["work_mem=64MB", "jit=off"]}),
        ("production", {}),
    ],
)
def test_computed_settings_read_back_on_a_real_server(program, start_postgres, stack, extra):
    settings = _command_settings(program(stack, extra))
    server = start_postgres(settings)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        # timescaledb.* settings beyond the loader's are defined once the extension is loaded.
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        rows = {
            name: (setting, unit, source)
            for name, setting, unit, source in conn.execute(
                "SELECT name, setting, unit, source FROM pg_settings WHERE name = ANY(%s)",
                [list(settings)],
            )
        }
        missing = set(settings) - set(rows)
        license_ = conn.execute("SHOW timescaledb.license").fetchone()
        if license_ == ("apache",):
            # Debian's Apache-only build compiles telemetry out; the official images have it.
            missing -= BUILD_DEPENDENT
        assert not missing, f"settings unknown to PostgreSQL: {sorted(missing)}"
        for name, expected in sorted(settings.items()):
            if name not in rows:
                continue
            setting, unit, source = rows[name]
            assert source == "command line", f"{name} came from {source}"
            want = _base(expected, unit)
            got: float | str = float(setting) if isinstance(want, float) else setting
            if isinstance(want, float):
                assert got == pytest.approx(want), f"{name}: set {expected}, reads {setting} {unit}"
            else:
                assert got == want, f"{name}: set {expected}, reads {setting}"
        # TimescaleDB is preloaded and its own settings are live.
        assert conn.execute("SHOW timescaledb.max_background_workers").fetchone() == ("8",)
    if stack == "staging":
        assert settings["work_mem"] == "64MB"  # the stack's override won


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"shared_bufers": "1GB"}, "shared_bufers"),
        ({"work_mem": "64XB"}, "work_mem"),
    ],
)
def test_misspelled_setting_or_bad_unit_fails_the_start(start_postgres, bad, expected):
    with pytest.raises(ServiceStartError) as info:
        start_postgres(bad)
    assert expected in str(info.value)
