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
