"""The MS5.0 TimescaleDB stack: load settings, build the components, export the outputs."""

import pulumi

from ms5_components.errors import SettingsErrors
from ms5_components.settings import from_pulumi_config
from ms5_components.stack import build_stack

try:
    settings = from_pulumi_config()
except SettingsErrors as exc:
    # One clear message naming every bad key, not a traceback from inside a component.
    raise pulumi.RunError(str(exc)) from None

stack = build_stack(settings)
for key, value in sorted(stack.outputs.items()):
    pulumi.export(key, value)
