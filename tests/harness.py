"""Run the real Pulumi program (``infra/__main__.py``) under ``pulumi.runtime.set_mocks``.

:func:`run_program` evaluates the program for one stack with that stack's committed config
(``Pulumi.<stack>.yaml`` merged over ``Pulumi.yaml`` defaults, as the CLI does) plus overrides, and
records every ``RegisterResource`` request exactly as the engine would receive it: type, name,
parent, inputs (raw protobuf struct, secrets still wrapped), dependencies, and the options
(protect, deleteBeforeReplace, retainOnDelete, ignoreChanges, ...). Stack exports are resolved with
their secretness, and registered as the stack's outputs the way the SDK does at the end of a
program (one ``RegisterResourceOutputs`` once every export has resolved); the monitor records
that registration in an :class:`EventLog`, in order with the failures the rehearsal records.

:class:`ProgramMocks` gives every resource plausible, deterministic outputs; the rehearsal
(``tests/rehearsal.py``) subclasses it to execute dynamic providers for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import runpy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from ms5_components.stack_files import stack_config_strings

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "infra" / "__main__.py"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"
DYNAMIC_PREFIX = "pulumi-python:dynamic"


def stack_config(stack: str, overrides: Mapping[str, object] | None = None) -> dict[str, str]:
    """Config as the CLI hands it to the program: project defaults, stack file, overrides.

    Keys are ``ms5:<key>``; values are strings, as in PULUMI_CONFIG. The files are read the way
    the CLI reads them (YAML 1.2: ``off`` is a string), see :mod:`ms5_components.stack_files`.
    """
    return stack_config_strings(ROOT, stack, overrides)


@dataclass
class Registration:
    """One RegisterResource request as the engine received it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    """Raw inputs: secrets are ``{SECRET_SIG: SECRET_VALUE, "value": ...}`` dicts."""
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    delete_before_replace: bool
    retain_on_delete: bool
    ignore_changes: list[str]
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]
    provider: str
    aliases: list[dict[str, Any]] = field(default_factory=list)
    """Alias specs (``{"parentUrn": ...}``, ``{"name": ...}``) or ``{"urn": ...}`` for alias URNs."""
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dynamic(self) -> bool:
        return self.type.startswith(DYNAMIC_PREFIX)

    def plain(self, key: str) -> Any:
        """An input with secret wrappers removed."""
        return unwrap(self.inputs.get(key))

    def is_secret(self, key: str) -> bool:
        return contains_secret(self.inputs.get(key))


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def contains_secret(value: Any) -> bool:
    if is_secret_value(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


def unwrap(value: Any) -> Any:
    if is_secret_value(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class Event:
    """One event as the engine would see it, in arrival order."""

    seq: int
    kind: str
    """``stack-outputs`` (the program registered the stack's outputs) or ``failed`` (a
    provider call failed: the engine cancels the deployment)."""
    urn: str
    data: dict[str, Any] = field(default_factory=dict)
    """The stack's outputs (plain values) for ``stack-outputs``."""


class EventLog:
    """Events from the monitor's and the providers' threads, numbered in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def record(self, kind: str, urn: str, data: Mapping[str, Any] | None = None) -> Event:
        with self._lock:
            event = Event(len(self.events), kind, urn, dict(data or {}))
            self.events.append(event)
            return event

    def first(self, kind: str) -> Event | None:
        with self._lock:
            return next((e for e in self.events if e.kind == kind), None)

    def of_kind(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]


class ProgramMocks(pulumi.runtime.Mocks):
    """Deterministic outputs for every resource type the program uses."""

    @property
    def events(self) -> EventLog:
        """This run's event log (shared by the monitor and the mocks)."""
        log = self.__dict__.get("_events")
        if log is None:
            log = self.__dict__["_events"] = EventLog()
        return log

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        digest = hashlib.sha256(f"{args.typ}:{args.name}".encode()).hexdigest()
        if args.typ == "docker:index/remoteImage:RemoteImage":
            repo = str(args.inputs["name"]).split("@")[0].rsplit(":", 1)[0]
            outputs["imageId"] = f"sha256:{digest}"
            outputs["repoDigest"] = f"{repo}@sha256:{digest}"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"mock-{digest[:28]}"
        elif args.typ.startswith(DYNAMIC_PREFIX):
            outputs.update(self.dynamic_outputs(args))
        return f"{args.name}-id", outputs

    def dynamic_outputs(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        """Outputs of a dynamic resource; the rehearsal overrides this to run the provider."""
        return {}

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


_CURRENT = threading.local()


def current_request() -> Any:
    """The RegisterResource request being served on this thread (its options: deleteBeforeReplace,
    ignoreChanges, ...), for mocks that act on them; None outside a registration."""
    return getattr(_CURRENT, "request", None)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that keeps every request, and marks additionalSecretOutputs secret like the engine."""

    def __init__(self, mocks: ProgramMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        self.order: list[str] = []
        self.events = mocks.events

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        """Record the stack's outputs as the engine receives them (plain values)."""
        if f"::{STACK_TYPE}::" in request.urn:
            outputs = unwrap(json_format.MessageToDict(request.outputs))
            self.events.record("stack-outputs", request.urn, outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        _CURRENT.request = request
        try:
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        finally:
            _CURRENT.request = None
        if request.type == STACK_TYPE:
            return response
        urn = response.urn
        inputs = json_format.MessageToDict(request.object)
        reg = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            inputs=inputs,
            dependencies=list(request.dependencies),
            property_dependencies={
                k: list(v.urns) for k, v in request.propertyDependencies.items()
            },
            protect=bool(request.protect),
            delete_before_replace=bool(request.deleteBeforeReplace),
            retain_on_delete=bool(request.retainOnDelete),
            ignore_changes=list(request.ignoreChanges),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            replace_on_changes=list(request.replaceOnChanges),
            provider=request.provider,
            aliases=[json_format.MessageToDict(a) for a in request.aliases]
            + [{"urn": u} for u in request.aliasURNs],
            outputs=json_format.MessageToDict(response.object),
        )
        self.registrations[urn] = reg
        self.order.append(urn)
        if reg.additional_secret_outputs and response.object is not None:
            # The engine marks these outputs secret; the plain MockMonitor does not.
            state = json_format.MessageToDict(response.object)
            for key in reg.additional_secret_outputs:
                if key in state and not is_secret_value(state[key]):
                    state[key] = {SECRET_SIG: SECRET_VALUE, "value": state[key]}
            response.object.Clear()
            json_format.ParseDict(state, response.object)
        return response


@dataclass
class ProgramRun:
    """What one evaluation of the program registered and exported."""

    stack: str
    config: dict[str, str]
    registrations: dict[str, Registration]
    order: list[str]
    exports: dict[str, Any]
    secret_exports: set[str]
    events: EventLog = field(default_factory=EventLog)
    """The stack-outputs registration and failures, in arrival order."""
    export_resources: dict[str, set[str]] = field(default_factory=dict)
    """Export name -> URNs of the resources its value reads (``Output.resources()``)."""

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations.values() if r.type == type_]

    def one(self, type_: str, name_suffix: str = "") -> Registration:
        found = [r for r in self.by_type(type_) if r.name.endswith(name_suffix)]
        assert len(found) == 1, (
            f"expected one {type_} named *{name_suffix}, got {[r.urn for r in found]}"
        )
        return found[0]

    def by_name(self, name: str) -> Registration:
        found = [r for r in self.registrations.values() if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, got {[r.urn for r in found]}"
        return found[0]

    def depends_on(self, dependant: Registration, dependency: Registration) -> bool:
        """Whether ``dependant`` waits for ``dependency`` (directly, via inputs, or via parents)."""
        seen: set[str] = set()
        stack = [dependant.urn]
        while stack:
            urn = stack.pop()
            if urn in seen:
                continue
            seen.add(urn)
            reg = self.registrations.get(urn)
            if reg is None:
                continue
            deps = set(reg.dependencies)
            for urns in reg.property_dependencies.values():
                deps.update(urns)
            if dependency.urn in deps:
                return True
            # A dependency on a component means a dependency on all its children.
            for dep in deps:
                if self._is_ancestor(dep, dependency.urn):
                    return True
            stack.extend(deps)
        return False

    def _is_ancestor(self, ancestor: str, urn: str) -> bool:
        reg = self.registrations.get(urn)
        while reg is not None and reg.parent:
            if reg.parent == ancestor:
                return True
            reg = self.registrations.get(reg.parent)
        return False


def run_program(
    stack: str,
    overrides: Mapping[str, object] | None = None,
    *,
    preview: bool = False,
    mocks: ProgramMocks | None = None,
    secret_keys: tuple[str, ...] = (),
    project: str = "ms5",
    stack_name: str | None = None,
) -> ProgramRun:
    """Evaluate ``infra/__main__.py`` for ``stack`` under mocks and return what it registered.

    ``stack_name`` runs it as another stack name with ``stack``'s config (unique Docker object
    names for tests sharing one engine)."""
    config = stack_config(stack, overrides)
    mocks = mocks or ProgramMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_all_config(config, [k for k in config if k in secret_keys])
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack_name or stack, preview=preview, monitor=monitor
    )
    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()
    export_resources: dict[str, set[str]] = {}

    async def resource_urns(value: Any) -> list[str]:
        resources = await pulumi.Output.from_input(value).resources()
        return [str(await r.urn.future()) for r in resources]

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[Any]:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        root = pulumi_settings.get_root_resource()
        outputs: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
        # As the SDK ends a program: one RegisterResourceOutputs of the stack, sent once every
        # export has resolved (the mocks' root registered its empty outputs at set-up).
        if isinstance(root, pulumi.ComponentResource):
            root.register_outputs(dict(outputs))

        def collect(resolved: list[Any]) -> None:
            for (name, _), (value, secret, urns) in zip(
                sorted(outputs.items()), resolved, strict=True
            ):
                exports[name] = value
                export_resources[name] = set(urns)
                if secret:
                    secret_exports.add(name)

        pairs = [
            pulumi.Output.all(
                pulumi.Output.from_input(v),
                pulumi.Output.from_input(v).is_secret(),
                pulumi.Output[list[str]].from_input(
                    asyncio.ensure_future(resource_urns(v))  # type: ignore[arg-type]
                ),
            )
            for _, v in sorted(outputs.items())
        ]
        return pulumi.Output.all(*pairs).apply(collect)

    evaluate()
    return ProgramRun(
        stack=stack,
        config=config,
        registrations=monitor.registrations,
        order=monitor.order,
        exports=exports,
        secret_exports=secret_exports,
        events=mocks.events,
        export_resources=export_resources,
    )
