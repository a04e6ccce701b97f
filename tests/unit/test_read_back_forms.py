"""Container inputs are written in the form terraform-provider-docker reads them back."""

from __future__ import annotations

import pytest

from ms5_components.docker_common import docker_cpus, go_duration

CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5, "5s"),
        (59, "59s"),
        (60, "1m0s"),
        (120, "2m0s"),
        (300, "5m0s"),
        (3599, "59m59s"),
        (3600, "1h0m0s"),
        (3661, "1h1m1s"),
        (86400, "24h0m0s"),
    ],
)
def test_go_duration_is_time_duration_string(seconds, text):
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("cpus", "text"),
    # nanoInt64ToDecimalString: nine decimals; exactly nine zeros -> one decimal, else trimmed.
    [
        (1, "1.0"),
        (2, "2.0"),
        (4, "4.0"),
        ("0.5", "0.5"),
        ("0.25", "0.25"),
        ("1.5", "1.5"),
        (10, "10."),
        ("0.05", "0.1"),
        ("2.0", "2.0"),
    ],
)
def test_docker_cpus_is_the_providers_read_back(cpus, text):
    assert docker_cpus(cpus) == text


def test_bad_values_are_refused():
    with pytest.raises(ValueError):
        go_duration(-1)
    with pytest.raises(ValueError):
        docker_cpus(0)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_container_writes_durations_and_cpus_as_read_back(program, stack):
    run = program(stack)
    containers = run.by_type(CONTAINER)
    assert len(containers) >= 4
    for c in containers:
        hc = c.plain("healthcheck")
        assert hc is not None, c.urn
        for key in ("interval", "timeout", "startPeriod"):
            seconds = _seconds(hc[key])
            assert hc[key] == go_duration(seconds), (c.urn, key, hc[key])
        # start_interval needs Engine 25 / API 1.44; older engines drop it silently.
        assert "startInterval" not in hc, c.urn
        if c.plain("cpus") is not None:
            assert c.plain("cpus") == docker_cpus(c.plain("cpus")), c.urn


def _seconds(text: str) -> int:
    import re

    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s", text)
    assert m, text
    h, mnt, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mnt * 60 + s


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_container_is_replaced_delete_before_replace(program, stack):
    # Container names are fixed: creating the replacement first would conflict (Docker 409).
    for c in program(stack).by_type(CONTAINER):
        assert c.delete_before_replace, c.urn
