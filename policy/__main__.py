"""The CrossGuard policy pack: wiring only; the rules live in rules.py."""

from collections.abc import Callable, Mapping
from typing import Any

import pulumi_policy
from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from rules import hardened_container, pgdata_on_named_volume, ports_bound_to_loopback

Rule = Callable[[str, Mapping[str, Any]], list[str]]


def _policy(name: str, rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip().splitlines()[0],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


pulumi_policy.PolicyPack(
    name="ms5-timescaledb",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        _policy("pgdata-on-named-volume", pgdata_on_named_volume),
        _policy("ports-bound-to-loopback", ports_bound_to_loopback),
        _policy("hardened-container", hardened_container),
    ],
)
