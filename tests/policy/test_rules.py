"""Edge cases of the rules as pure functions (the pack-level tests run them over gRPC)."""

from __future__ import annotations

import json

import pytest

from ms5_policy import containers, lifecycle, stack
from ms5_policy.model import (
    CONTAINER,
    REMOTE_IMAGE,
    UNKNOWN,
    Context,
    Resource,
    Unchecked,
    Violation,
)
from ms5_policy.sdk import plain, tier_from_environment

PROD, STAGING = Context(tier="production"), Context(tier="staging")
DIGEST = "@sha256:" + "a" * 64


def _image(name: object) -> Resource:
    return Resource(type=REMOTE_IMAGE, name="img", urn="urn:img", props={"name": name})


@pytest.mark.parametrize(
    ("reference", "staging_ok", "production_ok"),
    [
        ("timescale/timescaledb:2.19.3-pg17", True, False),
        ("timescale/timescaledb:2.19.3-pg17" + DIGEST, True, True),
        ("timescale/timescaledb" + DIGEST, True, True),
        ("timescale/timescaledb", False, False),
        ("timescale/timescaledb:latest", False, False),
        ("localhost:5000/ms5/db", False, False),  # a registry port is not a tag
        ("localhost:5000/ms5/db:1.0", True, False),
        ("sha256:" + "b" * 64, True, True),  # a local image id
    ],
)
def test_image_references(reference, staging_ok, production_ok):
    assert (containers.images_pinned(_image(reference), STAGING) == []) is staging_ok
    assert (containers.images_pinned(_image(reference), PROD) == []) is production_ok


def test_digest_requirement_can_be_relaxed_by_config():
    relaxed = Context(tier="production", config={"requireDigest": False})
    assert containers.images_pinned(_image("prom/prometheus:v2.53.3"), relaxed) == []
    assert containers.images_pinned(_image("prom/prometheus:latest"), relaxed)


def test_unknown_values_become_unchecked_findings():
    assert containers.images_pinned(_image(UNKNOWN), PROD) == [
        Unchecked("img (RemoteImage): name (comes from another resource's output)")
    ]
    container = Resource(type=CONTAINER, name="c", urn="urn:c", props={"ports": [{"ip": UNKNOWN}]})
    assert containers.ports_bound_to_loopback(container, PROD) == [
        Unchecked("c (Container): ports[0].ip")
    ]


@pytest.mark.parametrize(
    ("props", "ok"),
    [
        ({"restart": "on-failure:3"}, True),
        ({"restart": "always"}, True),
        ({"restart": "no"}, False),
        ({}, False),
    ],
)
def test_restart_policies(props, ok):
    resource = Resource(type=CONTAINER, name="c", urn="urn:c", props=props)
    assert (containers.restart_policy(resource, PROD) == []) is ok


def test_local_log_driver_rotates_and_host_paths_are_judged():
    local = Resource(type=CONTAINER, name="c", urn="urn:c", props={"logDriver": "local"})
    assert containers.log_rotation(local, PROD) == []
    for path, bad in (
        ("/", True),
        ("/etc/ssl", True),
        ("/run/user/1000/docker.sock", True),
        ("/srv/data", False),
    ):
        mounts = Resource(
            type=CONTAINER,
            name="c",
            urn="urn:c",
            props={"volumes": [{"hostPath": path, "containerPath": "/x"}]},
        )
        assert bool(containers.no_sensitive_host_mounts(mounts, PROD)) is bad, path


def test_hypertable_sql_forms():
    sql = {
        "V1__a.sql": "SELECT create_hypertable(relation => 'events', by_range('time'));\n"
        "SELECT add_compression_policy('events', INTERVAL '7 days');\n"
        "/* SELECT add_retention_policy('events', INTERVAL '1 year'); */\n",
        "V2__b.sql": "SELECT add_retention_policy('public.events', drop_after => INTERVAL '1 year');",
    }
    assert lifecycle.hypertable_policies(sql) == {
        "public.events": {"file": "V1__a.sql", "compression": True, "retention": True}
    }


def test_tier_comes_from_the_stack_config_then_the_stack_name():
    config = json.dumps({"ms5:environment": "staging"})
    assert (
        tier_from_environment({"PULUMI_CONFIG": config, "PULUMI_STACK": "production"}) == "staging"
    )
    assert tier_from_environment({"PULUMI_STACK": "staging"}) == "staging"
    assert tier_from_environment({"PULUMI_STACK": "qa"}) == "production"  # strict when unsure
    assert tier_from_environment({"PULUMI_CONFIG": "not json"}) == "production"


def test_plain_copies_sdk_proxies_with_unknowns():
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy(
        {"a": [1, UNKNOWN_STRING_VALUE, {"b": UNKNOWN_STRING_VALUE}], "c": "x"}
    )
    assert plain(props) == {"a": [1, UNKNOWN, {"b": UNKNOWN}], "c": "x"}


def test_dependencies_on_a_component_count_for_its_children():
    component = Resource(type="ms5:database:TimescaleDb", name="db", urn="urn:db", props={})
    child = Resource(type=CONTAINER, name="c", urn="urn:c", props={}, parent="urn:db")
    reader = Resource(type="t", name="r", urn="urn:r", props={}, dependencies=("urn:db",))
    graph = stack.Graph([component, child, reader])
    assert graph.waits_for(reader, child)
    assert not graph.waits_for(child, reader)


def test_violation_messages_never_carry_the_value():
    secret = "s3cr3t-value-never-shown"
    container = Resource(
        type=CONTAINER,
        name="c",
        urn="urn:c",
        props={
            "envs": [f"API_TOKEN={secret}", f"URL=postgresql://u:{secret}@h/db"],
            "command": [f"--password={secret}"],
        },
    )
    findings = containers.secrets_not_in_plain_sight(container, PROD)
    assert len(findings) == 3 and all(isinstance(f, Violation) for f in findings)
    assert all(secret not in f.message for f in findings if isinstance(f, Violation))
