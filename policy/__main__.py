"""The CrossGuard policy pack: wiring only (the rules live in ms5_policy/)."""

from pulumi_policy import PolicyPack

from ms5_policy.sdk import PACK_NAME, environment_tier, policies

tier = environment_tier()
PolicyPack(
    name=PACK_NAME,
    description=f"MS5.0 TimescaleDB guard rails ({tier} stack: rules are "
    + ("mandatory)" if tier == "production" else "advisory)"),
    policies=policies(tier),
)
