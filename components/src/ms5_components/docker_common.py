"""Small builders every Docker-based component shares: labels and pinned images."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

from ms5_components.settings import NON_LOOPBACK_BIND_LABEL, ImageRef


def container_labels(labels: Mapping[str, str], component: str) -> list[docker.ContainerLabelArgs]:
    """The stack's labels plus ``ms5.component``, sorted (stable inputs)."""
    return [
        docker.ContainerLabelArgs(label=k, value=v)
        for k, v in sorted({**labels, "ms5.component": component}.items())
    ]


def publishing_labels(
    labels: Mapping[str, str], component: str, *, allow_non_loopback_bind: bool
) -> list[docker.ContainerLabelArgs]:
    """:func:`container_labels` for a container that publishes a port: with the opt-in label the
    policy pack accepts a non-loopback port by, when ms5:allowNonLoopbackBind is true."""
    extra = {NON_LOOPBACK_BIND_LABEL: "true"} if allow_non_loopback_bind else {}
    return container_labels({**labels, **extra}, component)


def volume_labels(labels: Mapping[str, str], component: str) -> list[docker.VolumeLabelArgs]:
    """:func:`container_labels` for volumes."""
    return [
        docker.VolumeLabelArgs(label=x.label, value=x.value)
        for x in container_labels(labels, component)
    ]


def pinned_image(name: str, ref: ImageRef, parent: pulumi.Resource) -> docker.RemoteImage:
    """The image pulled once and kept locally; containers run its ``image_id`` so that an
    unrelated ``pulumi up`` never recreates them."""
    return docker.RemoteImage(
        name,
        docker.RemoteImageArgs(name=ref.reference, keep_locally=True),
        opts=pulumi.ResourceOptions(parent=parent),
    )


DAEMON_MERGED = ["logOpts"]
"""Container properties Docker fills in from the daemon's defaults (``log-opts`` in daemon.json:
``compress``, ``mode``, ``tag``…). The provider reads them back and treats any difference as a
replacement, so without this every ``pulumi up`` on such a host would replace every container —
the database included. The cost: a change of ``ms5:dbLogMaxSize``/``dbLogMaxFiles`` applies when
the container is next replaced (or with ``pulumi up --replace <urn>``)."""


def reachable_host(bind_address: str) -> str:
    """The address a client on the Docker host uses for a port published on ``bind_address``:
    the bind address itself, or loopback for a wildcard bind."""
    return "127.0.0.1" if bind_address in ("0.0.0.0", "::") else bind_address  # noqa: S104


def go_duration(seconds: int) -> str:
    """A whole number of seconds in the form the Docker provider reads a duration back.

    terraform-provider-docker stores health-check durations as Go's ``time.Duration.String()``
    (``5s``, ``2m0s``, ``1h0m0s``); an input written otherwise (``120s``) differs from state on
    every ``pulumi up``.
    """
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def docker_cpus(cpus: float | int | str) -> str:
    """A CPU limit in the form the Docker provider reads ``cpus`` back from ``NanoCpus``.

    The provider prints the nanosecond count with nine decimals; when that text has exactly nine
    zeros it keeps one decimal (``2`` -> ``2.0``, ``0.5`` -> ``0.5``), otherwise it strips the
    trailing zeros (``0.25`` -> ``0.25``, ``10`` -> ``10.``). ``cpus`` forces a replacement, so an
    input written in another form would replace the container on every ``pulumi up``.
    """
    from decimal import Decimal

    nanos = int(Decimal(str(cpus)) * 1_000_000_000)
    if nanos <= 0:
        raise ValueError(f"a CPU limit must be positive, got {cpus!r}")
    whole, frac = divmod(nanos, 1_000_000_000)
    nine = f"{whole}.{frac:09d}"
    if nine.count("0") == 9:
        # One decimal, rounded half away from zero (Go's big.Rat.FloatString).
        tenths, rest = divmod(frac, 100_000_000)
        if rest * 2 >= 100_000_000:
            tenths += 1
        whole, tenths = whole + tenths // 10, tenths % 10
        return f"{whole}.{tenths}"
    return nine.rstrip("0")
