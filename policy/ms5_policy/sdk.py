"""The bridge between the rules (plain data) and the CrossGuard SDK.

- The tier comes from the stack: ``ms5:environment`` in the stack config the Pulumi CLI hands the
  pack process (``PULUMI_CONFIG``), else the stack name (``PULUMI_STACK``); with neither, the pack
  is strict (production). It sets each policy's default enforcement: mandatory in production,
  advisory in staging. ``--policy-pack-config`` overrides it per policy (or with ``all``).
- Props arrive through the SDK's unknown-checking proxy; they are copied into plain data with
  :data:`~ms5_policy.model.UNKNOWN` where the engine sent an unknown (preview).
- Violations are reported at the policy's enforcement level. What a rule could not check is
  reported too, through the SDK's own "can't run policy ... during preview" diagnostic (advisory),
  naming every property; ``pulumi up`` runs the rule again with the values known, before the
  resource's step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from ms5_policy.catalog import POLICIES, PolicySpec
from ms5_policy.model import (
    UNKNOWN,
    Context,
    Finding,
    Options,
    Resource,
    ResourceRule,
    StackRule,
    Tier,
    Unchecked,
    Violation,
)

PACK_NAME = "ms5-timescaledb"


def tier_from_environment(environ: Mapping[str, str]) -> Tier:
    """The stack's tier, from the environment the Pulumi CLI gives a policy pack."""
    try:
        config = json.loads(environ.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        config = {}
    value = config.get("ms5:environment") if isinstance(config, dict) else None
    if value in ("production", "staging"):
        return value  # type: ignore[no-any-return]
    if environ.get("PULUMI_STACK") == "staging":
        return "staging"
    return "production"


def plain(value: Any) -> Any:
    """A deep copy of an SDK proxy value with unknowns replaced by :data:`UNKNOWN`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in list(value):
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError:
                out[str(key)] = UNKNOWN
        return out
    if isinstance(value, Sequence):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def _options(opts: Any) -> Options:
    if opts is None:
        return Options()
    return Options(
        protect=bool(getattr(opts, "protect", False)),
        delete_before_replace=getattr(opts, "delete_before_replace", None),
        ignore_changes=tuple(getattr(opts, "ignore_changes", ()) or ()),
        additional_secret_outputs=tuple(getattr(opts, "additional_secret_outputs", ()) or ()),
    )


def _report(spec: PolicySpec, findings: list[Finding], report: ReportViolation) -> None:
    unchecked: list[str] = []
    for finding in findings:
        if isinstance(finding, Violation):
            report(f"{finding.message} Remediation: {spec.remediation}", finding.urn or None)
        elif isinstance(finding, Unchecked):
            unchecked.append(finding.what)
    if unchecked:
        error = UnknownValueError(UNKNOWN_STRING_VALUE, [])
        error.message = (
            "not checked, unknown until the resources they come from exist: "
            + "; ".join(sorted(set(unchecked)))
            + ". `pulumi up` checks them before the step runs."
        )
        raise error


def _config(spec: PolicySpec, given: Mapping[str, Any]) -> dict[str, Any]:
    values = {k: v["default"] for k, v in spec.config.items() if "default" in v}
    values.update({k: v for k, v in given.items() if k in spec.config})
    return values


def resource_policy(spec: PolicySpec, tier: Tier, level: EnforcementLevel) -> Policy:
    rule: ResourceRule = spec.rule  # type: ignore[assignment]

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        resource = Resource(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=plain(args.props),
            options=_options(args.opts),
            parent=(getattr(args.opts, "parent", None) or ""),
        )
        context = Context(tier=tier, config=_config(spec, args.get_config()))
        _report(spec, rule(resource, context), report)

    return ResourceValidationPolicy(
        name=spec.name,
        description=spec.description,
        validate=validate,
        enforcement_level=level,
        remediation_steps=spec.remediation,
        config_schema=PolicyConfigSchema(spec.config) if spec.config else None,
    )


def stack_policy(spec: PolicySpec, tier: Tier, level: EnforcementLevel) -> Policy:
    rule: StackRule = spec.rule  # type: ignore[assignment]

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [
            Resource(
                type=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=plain(r.props),
                options=_options(r.opts),
                parent=r.parent.urn if r.parent is not None else "",
                dependencies=tuple(
                    sorted(
                        {d.urn for d in r.dependencies}
                        | {d.urn for deps in r.property_dependencies.values() for d in deps}
                    )
                ),
            )
            for r in args.resources
        ]
        context = Context(tier=tier, config=_config(spec, args.get_config()))
        _report(spec, rule(resources, context), report)

    return StackValidationPolicy(
        name=spec.name,
        description=spec.description,
        validate=validate,
        enforcement_level=level,
        remediation_steps=spec.remediation,
        config_schema=PolicyConfigSchema(spec.config) if spec.config else None,
    )


def policies(tier: Tier) -> list[Policy]:
    """Every policy of the pack, enforced by default as the tier says."""
    level = EnforcementLevel.MANDATORY if tier == "production" else EnforcementLevel.ADVISORY
    build = {"resource": resource_policy, "stack": stack_policy}
    return [build[spec.kind](spec, tier, level) for spec in POLICIES]


def environment_tier() -> Tier:
    """:func:`tier_from_environment` of this process."""
    return tier_from_environment(os.environ)
