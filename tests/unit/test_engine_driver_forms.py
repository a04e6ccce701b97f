"""The engine driver's copies of terraform-provider-docker's read-back forms (pure functions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from driver import format_duration, nano_cpus_string, parse_cpus, parse_duration


@pytest.mark.parametrize(
    ("text", "ns", "read_back"),
    [
        ("5s", 5 * 10**9, "5s"),
        ("300s", 300 * 10**9, "5m0s"),
        ("120s", 120 * 10**9, "2m0s"),
        ("90s", 90 * 10**9, "1m30s"),
        ("3600s", 3600 * 10**9, "1h0m0s"),
        ("1.5s", 1_500_000_000, "1.5s"),
        ("500ms", 500_000_000, "500ms"),
        ("0s", 0, "0s"),
        ("1m30s", 90 * 10**9, "1m30s"),
    ],
)
def test_go_durations(text: str, ns: int, read_back: str) -> None:
    assert parse_duration(text) == ns
    assert format_duration(ns) == read_back


def test_an_invalid_duration_is_zero_as_the_provider_ignores_the_error() -> None:
    assert parse_duration("5 seconds") == 0


@pytest.mark.parametrize(
    ("cpus", "read_back"),
    [("2", "2.0"), ("1", "1.0"), ("0.5", "0.5"), ("0.25", "0.25"), ("1.5", "1.5"), ("10", "10.")],
)
def test_cpus_read_back_as_the_provider_formats_nano_cpus(cpus: str, read_back: str) -> None:
    assert nano_cpus_string(parse_cpus(cpus)) == read_back
