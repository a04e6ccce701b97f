"""Policy rules against the program's own resources (they pass) and against bad ones (they fire)."""

from __future__ import annotations

import importlib.util
import sys

from harness import ROOT, run_program, unwrap
from stacks import overrides_for

sys.path.insert(0, str(ROOT / "policy"))
import rules


def _containers(stack):
    run = run_program(stack, overrides_for(stack))
    return [
        (r.type, unwrap(r.inputs)) for r in run.registrations.values() if r.type == rules.CONTAINER
    ]


def test_program_passes_every_rule():
    for stack in ("staging", "production"):
        for type_, props in _containers(stack):
            for rule in rules.RULES:
                assert rule(type_, props) == [], (stack, rule.__name__)


def test_anonymous_pgdata_is_rejected_without_echoing_values():
    props = {
        "command": ["postgres"],
        "volumes": [{"containerPath": rules.PGDATA, "hostPath": "/x"}],
    }
    [message] = rules.pgdata_on_named_volume(rules.CONTAINER, props)
    assert "named volume" in message and "/x" not in message
    assert rules.pgdata_on_named_volume(rules.CONTAINER, {"command": ["postgres"]})


def test_public_port_and_missing_hardening_fire():
    props = {"ports": [{"internal": 5432, "external": 5432, "ip": "0.0.0.0"}], "privileged": True}
    assert rules.ports_bound_to_loopback(rules.CONTAINER, props)
    messages = rules.hardened_container(rules.CONTAINER, props)
    assert len(messages) == 4


def test_pack_wiring_registers_every_rule(monkeypatch):
    # PolicyPack() serves the engine's gRPC analyzer protocol; record its arguments instead.
    import pulumi_policy

    captured = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: captured.update(kw))
    spec = importlib.util.spec_from_file_location(
        "ms5_policy_main", ROOT / "policy" / "__main__.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    policies = captured["policies"]
    assert len(policies) == len(rules.RULES)
    violations = []
    bad = {"ports": [{"ip": "0.0.0.0"}]}
    args = pulumi_policy.ResourceValidationArgs(rules.CONTAINER, bad, "urn", "db", None, None)
    for policy in policies:
        policy.validate(args, lambda message, urn=None: violations.append(message))
    assert any("ports[0].ip" in v for v in violations)
