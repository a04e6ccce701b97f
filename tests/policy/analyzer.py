"""Run the policy pack the way the Pulumi CLI does, and speak the analyzer protocol to it.

What the CLI does for a Python pack (pulumi/pulumi ``sdk/go/common/resource/plugin/
analyzer_plugin.go`` and ``sdk/python/dist/pulumi-analyzer-policy-python``): start
``<virtualenv>/bin/python -u -m pulumi.policy <engine address> .`` with the pack directory as the
working directory (the virtualenv from PulumiPolicy.yaml, relative to it), the stack's config in
``PULUMI_CONFIG`` (JSON, secrets decrypted) and ``PULUMI_PROJECT``/``PULUMI_STACK``/
``PULUMI_DRY_RUN``/``PULUMI_ORGANIZATION``; read the gRPC port from the first line of stdout; then
``Handshake`` (the Python SDK answers UNIMPLEMENTED, which the CLI accepts), ``ConfigureStack``,
``GetAnalyzerInfo``, ``Configure`` (every policy's enforcement level and properties, merged from
the pack's defaults and ``--policy-pack-config``), ``Remediate`` and ``Analyze`` for every resource (its inputs,
``__`` keys skipped, unknowns and secrets as the engine marshals them) and ``AnalyzeStack`` once
(every resource's outputs, parent and dependencies).

:func:`records` turns a run of the real program under mocks (tests/harness.py) into the resources
the engine would send.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, engine_pb2_grpc

from harness import ROOT, ProgramRun

PACK_DIR = ROOT / "policy"
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's marker of an unknown string (preview), as it marshals it to analyzers."""
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.DISABLED: "disabled",
    analyzer_pb2.REMEDIATE: "remediate",
}
TO_LEVEL = {v: k for k, v in LEVELS.items()}


@dataclass
class Record:
    """One resource as the engine knows it (mutable: tests mutate copies)."""

    type: str
    name: str
    urn: str
    parent: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    provider: str = ""

    def set(self, key: str, value: Any) -> None:
        """Set a property in inputs and outputs alike (``None`` removes it)."""
        for props in (self.inputs, self.outputs):
            if value is None:
                props.pop(key, None)
            else:
                props[key] = copy.deepcopy(value)

    def drop_dependency(self, urn: str) -> None:
        self.dependencies = [d for d in self.dependencies if d != urn]
        self.property_dependencies = {
            k: [d for d in v if d != urn] for k, v in self.property_dependencies.items()
        }


def stack_urn(stack: str) -> str:
    return f"urn:pulumi:{stack}::ms5::pulumi:pulumi:Stack::ms5-{stack}"


def records(run: ProgramRun) -> list[Record]:
    """The root stack and every resource the program registered, in registration order."""
    out = [Record(type="pulumi:pulumi:Stack", name=f"ms5-{run.stack}", urn=stack_urn(run.stack))]
    for urn in run.order:
        reg = run.registrations[urn]
        out.append(
            Record(
                type=reg.type,
                name=reg.name,
                urn=reg.urn,
                parent=reg.parent,
                inputs=copy.deepcopy(reg.inputs),
                outputs=copy.deepcopy(reg.outputs),
                dependencies=list(reg.dependencies),
                property_dependencies={k: list(v) for k, v in reg.property_dependencies.items()},
                protect=reg.protect,
                delete_before_replace=reg.delete_before_replace,
                ignore_changes=list(reg.ignore_changes),
                additional_secret_outputs=list(reg.additional_secret_outputs),
                provider=reg.provider,
            )
        )
    return out


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str
    urn: str
    message: str


def _struct(props: Mapping[str, Any]) -> Any:
    clean = {k: v for k, v in props.items() if not k.startswith("__")}
    return json_format.ParseDict(clean, struct_pb2.Struct())


def _options(record: Record) -> Any:
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=record.protect,
        ignoreChanges=record.ignore_changes,
        deleteBeforeReplace=record.delete_before_replace,
        deleteBeforeReplaceDefined=record.delete_before_replace,
        additionalSecretOutputs=record.additional_secret_outputs,
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(),
        parent=record.parent,
    )


class _Engine(engine_pb2_grpc.EngineServicer):  # type: ignore[misc]
    """The engine's side the pack may call back (logs)."""

    def __init__(self) -> None:
        self.logs: list[str] = []

    def Log(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.logs.append(request.message)
        return empty_pb2.Empty()


def pack_python() -> Path:
    """The interpreter the CLI's shim runs: PulumiPolicy.yaml's virtualenv, relative to the pack."""
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    venv = Path(project["runtime"]["options"]["virtualenv"])
    python = (venv if venv.is_absolute() else PACK_DIR / venv) / "bin" / "python"
    assert python.exists(), f"PulumiPolicy.yaml's virtualenv has no {python}"
    return python


class Pack:
    """One running policy pack process and a gRPC client, as the CLI holds them."""

    def __init__(self, stack: str, config: Mapping[str, str], *, dry_run: bool = True) -> None:
        self.stack = stack
        self.engine = _Engine()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        engine_pb2_grpc.add_EngineServicer_to_server(self.engine, self._server)
        engine_port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        env = dict(os.environ)
        env.update(
            {
                "PULUMI_CONFIG": json.dumps(dict(config)),
                "PULUMI_PROJECT": "ms5",
                "PULUMI_STACK": stack,
                "PULUMI_DRY_RUN": "true" if dry_run else "false",
                "PULUMI_ORGANIZATION": "organization",
            }
        )
        self.process = subprocess.Popen(
            [str(pack_python()), "-u", "-m", "pulumi.policy", f"127.0.0.1:{engine_port}", "."],
            cwd=PACK_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.process.kill()
            _, err = self.process.communicate(timeout=30)
            raise AssertionError(f"the policy pack did not print its port: {line!r}\n{err}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        self.handshake_code = self._handshake()
        self.stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=stack,
                project="ms5",
                organization="organization",
                dry_run=dry_run,
                config={k: str(v) for k, v in config.items()},
            )
        )
        self.info = self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def _handshake(self) -> grpc.StatusCode:
        request = analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address="127.0.0.1:0",
            root_directory=str(PACK_DIR),
            program_directory=str(PACK_DIR),
        )
        try:
            self.stub.Handshake(request)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def defaults(self) -> dict[str, str]:
        """Each policy's default enforcement level, as GetAnalyzerInfo reports it."""
        return {p.name: LEVELS[p.enforcementLevel] for p in self.info.policies}

    def configure(self, pack_config: Mapping[str, Any] | None = None) -> None:
        """``Configure`` as the CLI sends it: for every policy, the level from the config file
        (its own entry, else ``all``, else the pack's default) and its properties."""
        pack_config = dict(pack_config or {})
        everyone = pack_config.get("all")
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for policy in self.info.policies:
            entry = pack_config.get(policy.name)
            level = LEVELS[policy.enforcementLevel]
            if isinstance(everyone, str):
                level = everyone
            properties: dict[str, Any] = {}
            if isinstance(entry, str):
                level = entry
            elif isinstance(entry, Mapping):
                level = entry.get("enforcementLevel", level)
                properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            request.policyConfig[policy.name].CopyFrom(
                analyzer_pb2.PolicyConfig(
                    enforcementLevel=TO_LEVEL[level],
                    properties=json_format.ParseDict(properties, struct_pb2.Struct()),
                )
            )
        self.stub.Configure(request)

    def _provider(self, record: Record, by_urn: Mapping[str, Record]) -> Any:
        if not record.provider:
            return None
        provider = by_urn.get(record.provider.rsplit("::", 1)[0])
        if provider is None:
            return None
        return analyzer_pb2.AnalyzerProviderResource(
            type=provider.type,
            urn=provider.urn,
            name=provider.name,
            properties=_struct(provider.inputs),
        )

    def analyze(self, resources: Iterable[Record]) -> list[Diagnostic]:
        """``Analyze`` per resource (inputs), then ``AnalyzeStack`` (outputs and edges)."""
        resources = list(resources)
        by_urn = {r.urn: r for r in resources}
        diagnostics: list[Diagnostic] = []
        for r in resources:
            request = analyzer_pb2.AnalyzeRequest(
                type=r.type,
                urn=r.urn,
                name=r.name,
                properties=_struct(r.inputs),
                options=_options(r),
                provider=self._provider(r, by_urn),
            )
            # The engine asks for remediations first; this pack has none (it only validates).
            assert not self.stub.Remediate(request).remediations, r.urn
            response = self.stub.Analyze(request)
            diagnostics.extend(self._diagnostics(response, default_urn=r.urn))
        stack_request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    urn=r.urn,
                    name=r.name,
                    properties=_struct(r.outputs),
                    options=_options(r),
                    provider=self._provider(r, by_urn),
                    parent=r.parent,
                    dependencies=r.dependencies,
                    propertyDependencies={
                        k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v)
                        for k, v in r.property_dependencies.items()
                        if v and not k.startswith("__")
                    },
                )
                for r in resources
            ]
        )
        diagnostics.extend(self._diagnostics(self.stub.AnalyzeStack(stack_request), default_urn=""))
        return diagnostics

    @staticmethod
    def _diagnostics(response: Any, default_urn: str) -> list[Diagnostic]:
        return [
            Diagnostic(
                policy=d.policyName,
                level=LEVELS[d.enforcementLevel],
                urn=d.urn or default_urn,
                message=d.message,
            )
            for d in response.diagnostics
        ]

    def close(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        self._server.stop(0)
