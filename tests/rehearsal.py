"""A rehearsal of ``pulumi up`` / ``pulumi preview`` against real services, without the CLI.

The real program (``infra/__main__.py``) runs under ``pulumi.runtime.set_mocks`` (through
:func:`harness.run_program`). Every *dynamic* resource is executed the way the engine executes it:

- its inputs are serialized with the SDK's own ``rpc.serialize_properties`` into a protobuf
  ``Struct`` (so ints become floats, secrets are sent in plaintext because the dynamic provider
  does not accept secrets, and unknown values become the engine's unknown sentinel);
- they are sent over gRPC to a real provider host: ``python -I -u -m pulumi.dynamic`` (what
  ``pulumi-resource-pulumi-python`` runs), started with the venv's interpreter in isolated mode,
  in a temporary directory outside the repository, with ``PYTHONPATH`` removed. It deserializes
  the ``__provider`` with dill exactly as under the engine;
- the engine's sequence is followed: ``Configure``; then ``Check``; for a resource already in
  state ``Diff`` (olds = the previous *outputs*) and ``Update`` only when it reports changes; for
  a new one ``Create``; in preview only ``Check`` and ``Diff`` (the provider does not support
  preview, so the engine never calls ``Create``/``Update`` then). Resources that leave the program
  are ``Delete``-d on ``up``;
- outputs are fed back to the program, and a :class:`RehearsalState` (id, inputs and outputs per
  URN, and the stack outputs) carries them to the next run, like the stack's state file;
- the stack outputs follow the engine's rule: a successful ``up`` replaces them with the ones
  the program registered; a failed one keeps the previous ones and merges over them the new
  ones only when the program registered them *before* the failing provider call (after it the
  engine cancels the deployment and reads no more events). The order is the real one (the
  monitor and the provider calls run on their own threads); a failed ``up`` exposes the outputs
  the engine would keep as :attr:`RehearsalError.exports`.

Other resources get the harness's deterministic mocked outputs (in preview, a resource not yet in
state gets an unknown id and only its inputs as outputs, as with the engine). Resources that need
something this machine lacks (the Docker engine) can be given a *stand-in*: a function from inputs
to outputs, reported as such.

Usage (reused by later issues)::

    rehearsal = Rehearsal("staging", {"ms5:dbPort": 5433, ...}, stand_ins=NO_DOCKER)
    first = rehearsal.up()                 # RehearsalRun
    first.by_type(MIGRATION_SET)[0].op     # "create"
    rehearsal.preview().changed()          # [] after a no-op
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from harness import DYNAMIC_PREFIX, Event, ProgramMocks, ProgramRun, run_program, unwrap

PROVIDER_KEY = "__provider"
MIGRATION_SET = "pulumi-python:dynamic/ms5:MigrationSet"
HOST_PREFLIGHT = "pulumi-python:dynamic/ms5:HostPreflight"
CONTAINER_HEALTH = "pulumi-python:dynamic/ms5:ContainerHealth"
BACKUP = "pulumi-python:dynamic/ms5:Backup"
RESTORE_DRILL = "pulumi-python:dynamic/ms5:RestoreDrill"

Op = Literal["create", "update", "same", "delete", "stand-in"]
StandIn = Callable[[dict[str, Any]], dict[str, Any]]
Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class RehearsalError(Exception):
    """A provider call failed (as ``pulumi up`` would fail); carries the results so far, and
    (set by the run) the stack outputs the engine keeps and the events in arrival order."""

    def __init__(self, message: str, results: list[ResourceResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []
        self.exports: dict[str, Any] = {}
        """The stack outputs in state after this failed ``up`` (see the module docstring)."""
        self.events: list[Event] = []
        """The stack-outputs registrations and the failure, in the order the engine got them."""


@dataclass
class ResourceResult:
    """What the rehearsal did with one resource."""

    urn: str
    type: str
    name: str
    op: Op
    """create/update/same (delete for resources that left the program; stand-in for simulated)."""
    diff_keys: list[str] = field(default_factory=list)
    """Changed input paths as a preview shows them (``migrations.V0007__x.sql``); ``__provider``
    and the run-time settings are never listed by the engine's display for an unchanged value."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """Outputs fed back to the program (plain values; ``__provider`` removed)."""
    provider_called: list[str] = field(default_factory=list)
    """Provider methods called, in order (Check, Diff, Create, Update, Delete)."""
    shown_keys: list[str] = field(default_factory=list)
    """For an update in preview: the input keys ``pulumi preview --diff`` shows changed. A
    dynamic provider does not support preview, so the engine shows the previous *outputs*
    against the new inputs (its display of an update with outputs): a key a previous run set
    in its outputs and the inputs leave empty (``rerunReason``) shows as changed."""


@dataclass
class StateEntry:
    type: str
    id: str
    inputs: dict[str, Any]
    """Checked inputs (plain, secrets revealed, ``__provider`` included)."""
    outputs: dict[str, Any]
    """Outputs (``__provider`` included), as the engine keeps them."""


@dataclass
class RehearsalState:
    """The stack state between runs: URN -> entry, and the stack outputs."""

    resources: dict[str, StateEntry] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    """The stack outputs as the engine keeps them (plain values)."""


@dataclass
class RehearsalRun:
    """One ``up`` or ``preview``."""

    preview: bool
    program: ProgramRun
    results: list[ResourceResult]

    def by_type(self, type_: str) -> list[ResourceResult]:
        return [r for r in self.results if r.type == type_]

    def one(self, type_: str) -> ResourceResult:
        found = self.by_type(type_)
        assert len(found) == 1, f"expected one {type_}, got {[r.urn for r in found]}"
        return found[0]

    def changed(self) -> list[ResourceResult]:
        """Dynamic resources that were (or in preview would be) created, updated or deleted."""
        return [r for r in self.results if r.op in ("create", "update", "delete")]


# --------------------------------------------------------------------------------------------------
# The provider host: the engine's side of a dynamic provider
# --------------------------------------------------------------------------------------------------


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Serialize plain values with the SDK's own serializer (ints become floats)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(props), {}))
    finally:
        loop.close()


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(_engine_values(unwrap(rpc.deserialize_properties(struct, keep_unknowns=True))))


class ProviderHost:
    """``python -I -u -m pulumi.dynamic`` in a clean directory, spoken to over gRPC."""

    def __init__(self, project: str = "ms5", config: Mapping[str, str] | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ms5-provider-host-"))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")
            and not k.startswith("PULUMI_")
        }
        env["PULUMI_PROJECT"] = project
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-u", "-m", "pulumi.dynamic"],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.isdigit():
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise RehearsalError(f"the provider host did not start: {line!r} {err}")
        # The engine's client is grpc-go, whose header lists may be 16 MiB (a failing resource's
        # error travels in the trailers); Python's default soft limit is 8 KiB.
        limit = 16 << 20
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{line}",
            options=[("grpc.max_metadata_size", limit), ("grpc.absolute_max_metadata_size", limit)],
        )
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        self.stub.Configure(
            provider_pb2.ConfigureRequest(
                args=_struct(dict(config or {})), acceptSecrets=True, acceptResources=True
            )
        )

    def check(
        self, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        resp = self._call(
            "Check", provider_pb2.CheckRequest(urn=urn, olds=_struct(olds), news=_struct(news))
        )
        return _plain(resp.inputs), [(f.property, f.reason) for f in resp.failures]

    def diff(self, urn: str, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Any:
        return self._call(
            "Diff",
            provider_pb2.DiffRequest(id=id_, urn=urn, olds=_struct(olds), news=_struct(news)),
        )

    def create(self, urn: str, news: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        resp = self._call("Create", provider_pb2.CreateRequest(urn=urn, properties=_struct(news)))
        return str(resp.id), _plain(resp.properties)

    def update(
        self, urn: str, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> dict[str, Any]:
        resp = self._call(
            "Update",
            provider_pb2.UpdateRequest(id=id_, urn=urn, olds=_struct(olds), news=_struct(news)),
        )
        return _plain(resp.properties)

    def delete(self, urn: str, id_: str, props: Mapping[str, Any]) -> None:
        self._call("Delete", provider_pb2.DeleteRequest(id=id_, urn=urn, properties=_struct(props)))

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=900)
        except grpc.RpcError as exc:
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise RehearsalError(f"{method} failed in the provider host:\n{details}") from None

    def close(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def provider_host(
    project: str = "ms5", config: Mapping[str, str] | None = None
) -> Iterator[ProviderHost]:
    host = ProviderHost(project, config)
    try:
        yield host
    finally:
        host.close()


# --------------------------------------------------------------------------------------------------
# The mocks: dynamic resources through the provider host
# --------------------------------------------------------------------------------------------------


def _engine_values(value: Any) -> Any:
    """Inputs as the engine sends them to a provider that does not accept secrets: secrets in
    plaintext, unknowns as the unknown sentinel."""
    if isinstance(value, pulumi.output.Unknown):
        return rpc.UNKNOWN
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _engine_values(value.get("value"))
        return {k: _engine_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_engine_values(v) for v in value]
    return value


def display_diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Changed input paths, one level into maps (as ``pulumi preview --diff`` lists them)."""
    keys: list[str] = []
    for key in sorted(set(olds) | set(news)):
        if key == PROVIDER_KEY:
            continue
        old, new = olds.get(key), news.get(key)
        if old == new:
            continue
        if isinstance(old, dict | None) and isinstance(new, dict | None) and (old or new):
            old_map, new_map = old or {}, new or {}
            keys.extend(
                f"{key}.{sub}"
                for sub in sorted(set(old_map) | set(new_map))
                if old_map.get(sub) != new_map.get(sub)
            )
        else:
            keys.append(key)
    return keys


class RehearsalMocks(ProgramMocks):
    def __init__(
        self,
        host: ProviderHost,
        state: RehearsalState,
        *,
        preview: bool,
        stack: str,
        project: str,
        stand_ins: Mapping[str, StandIn],
        rewrites: Mapping[str, Rewrite] | None = None,
    ) -> None:
        self.rewrites = dict(rewrites or {})
        self.host = host
        self.state = state
        self.preview = preview
        self.stack = stack
        self.project = project
        self.stand_ins = stand_ins
        self.results: list[ResourceResult] = []
        self.seen: set[str] = set()
        self.error: RehearsalError | None = None

    def urn(self, args: pulumi.runtime.MockResourceArgs, parent_type: str | None = None) -> str:
        return f"urn:pulumi:{self.stack}::{self.project}::{args.typ}::{args.name}"

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        urn = self.urn(args)
        self.seen.add(urn)
        if not args.typ.startswith(DYNAMIC_PREFIX):
            id_, outputs = super().new_resource(args)
            old = self.state.resources.get(urn)
            if self.preview and old is None:
                return "", dict(args.inputs)  # unknown id and computed outputs, as in preview
            if not self.preview:
                self.state.resources[urn] = StateEntry(args.typ, str(id_), {}, unwrap(outputs))
            return id_, outputs
        news = _engine_values(args.inputs)
        if args.typ in self.rewrites:
            news = self.rewrites[args.typ](news)
        if self.error is not None:
            # The engine stops at the first failure: later resources are not touched.
            return "", news
        if args.typ in self.stand_ins:
            outputs = {**news, **self.stand_ins[args.typ](news)}
            self.results.append(
                ResourceResult(urn, args.typ, args.name, "stand-in", outputs=outputs)
            )
            if not self.preview:
                self.state.resources[urn] = StateEntry(
                    args.typ, f"{args.name}-stand-in", news, outputs
                )
            return f"{args.name}-stand-in", outputs
        try:
            return self._dynamic(urn, args, news)
        except RehearsalError as exc:
            # Let the program finish evaluating (no stray failed futures); the run raises it.
            self.fail(urn, exc)
            return "", news

    def fail(self, urn: str, error: RehearsalError) -> None:
        """A provider call failed: the engine cancels the deployment here (the first one)."""
        if self.error is None:
            self.events.record("failed", urn)
            self.error = error

    def _dynamic(
        self, urn: str, args: pulumi.runtime.MockResourceArgs, news: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        old = self.state.resources.get(urn)
        called = ["Check"]
        checked, failures = self.host.check(urn, old.inputs if old else {}, news)
        if failures:
            lines = "\n".join(f"  {prop}: {reason}" for prop, reason in failures)
            raise RehearsalError(f"{urn}: check failed:\n{lines}", self.results)
        result = ResourceResult(urn, args.typ, args.name, "same", provider_called=called)
        if old is None:
            result.op = "create"
            result.diff_keys = display_diff({}, checked)
            if self.preview:
                result.outputs = _strip(checked)
                self.results.append(result)
                return "", checked
            called.append("Create")
            id_, outs = self._guard(lambda: self.host.create(urn, checked), result)
            self.state.resources[urn] = StateEntry(args.typ, id_, checked, outs)
            result.outputs = _strip(outs)
            self.results.append(result)
            return id_, outs
        called.append("Diff")
        diff = self.host.diff(urn, old.id, old.outputs, checked)
        changes = diff.changes == provider_pb2.DiffResponse.DIFF_SOME
        if list(diff.replaces):
            raise RehearsalError(
                f"{urn}: the provider asked to replace {list(diff.replaces)}", self.results
            )
        if not changes:
            if not self.preview:
                self.state.resources[urn] = StateEntry(args.typ, old.id, checked, old.outputs)
            result.outputs = _strip(old.outputs)
            self.results.append(result)
            return old.id, old.outputs
        result.op = "update"
        result.diff_keys = display_diff(old.inputs, checked)
        if self.preview:
            result.shown_keys = sorted(
                k for k in _strip(checked) if old.outputs.get(k) != checked.get(k)
            )
            result.outputs = _strip(checked)
            self.results.append(result)
            return old.id, checked
        called.append("Update")
        outs = self._guard(lambda: self.host.update(urn, old.id, old.outputs, checked), result)
        self.state.resources[urn] = StateEntry(args.typ, old.id, checked, outs)
        result.outputs = _strip(outs)
        self.results.append(result)
        return old.id, outs

    def _guard(self, call: Callable[[], Any], result: ResourceResult) -> Any:
        try:
            return call()
        except RehearsalError as exc:
            raise RehearsalError(str(exc), [*self.results, result]) from None


def _strip(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


# --------------------------------------------------------------------------------------------------
# The rehearsal
# --------------------------------------------------------------------------------------------------


def no_docker_preflight(inputs: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for HostPreflight on a machine without a Docker engine (plausible facts)."""
    return {
        "docker_version": "rehearsal (no Docker engine)",
        "docker_root_dir": "/var/lib/docker",
        "host_memory_mb": max(int(float(inputs.get("memory_mb") or 0)) * 4, 8192),
        "free_disk_gb": 100.0,
    }


def no_docker_health(inputs: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for ContainerHealth without a Docker engine: the rehearsal's server is already up."""
    return {"health_status": "healthy"}


NO_DOCKER: dict[str, StandIn] = {
    HOST_PREFLIGHT: no_docker_preflight,
    CONTAINER_HEALTH: no_docker_health,
}
"""Stand-ins for the resources that need a Docker engine."""


class Rehearsal:
    """``pulumi up``/``preview`` of one stack, repeated against the same state."""

    mocks_class: type[RehearsalMocks] = RehearsalMocks
    """The mocks of one run (a subclass may run more than the dynamic resources for real)."""

    def __init__(
        self,
        stack: str,
        config: Mapping[str, object] | None = None,
        *,
        stand_ins: Mapping[str, StandIn] | None = None,
        state: RehearsalState | None = None,
        project: str = "ms5",
        stack_name: str | None = None,
        rewrites: Mapping[str, Rewrite] | None = None,
    ) -> None:
        self.rewrites = dict(rewrites or {})
        self.stack = stack
        self.stack_name = stack_name or stack
        self.config: dict[str, object] = dict(config or {})
        self.stand_ins = dict(NO_DOCKER if stand_ins is None else stand_ins)
        self.state = state or RehearsalState()
        self.project = project

    def up(self, config: Mapping[str, object] | None = None) -> RehearsalRun:
        """Evaluate the program and create/update/delete dynamic resources for real."""
        return self._run(preview=False, config=config)

    def preview(self, config: Mapping[str, object] | None = None) -> RehearsalRun:
        """Evaluate the program; providers get only Check and Diff; the state is not changed."""
        return self._run(preview=True, config=config)

    def _run(self, *, preview: bool, config: Mapping[str, object] | None) -> RehearsalRun:
        merged = {**self.config, **(config or {})}
        with provider_host(self.project) as host:
            mocks = self.mocks_class(
                host,
                self.state,
                preview=preview,
                stack=self.stack_name,
                project=self.project,
                stand_ins=self.stand_ins,
                rewrites=self.rewrites,
            )
            secret_keys = tuple(k for k in merged if k.endswith(("Password", "password")))
            program = run_program(
                self.stack,
                merged,
                preview=preview,
                mocks=mocks,
                secret_keys=secret_keys,
                project=self.project,
                stack_name=self.stack_name,
            )
            results = list(mocks.results)
            if mocks.error is not None:
                raise self._failed(mocks, preview=preview)
            if not preview:
                registered = mocks.events.of_kind("stack-outputs")
                self.state.outputs = dict(registered[-1].data) if registered else {}
            if not preview:
                for urn in sorted(set(self.state.resources) - mocks.seen):
                    entry = self.state.resources.pop(urn)
                    if entry.type.startswith(DYNAMIC_PREFIX) and entry.type not in self.stand_ins:
                        host.delete(urn, entry.id, entry.outputs)
                        results.append(
                            ResourceResult(
                                urn,
                                entry.type,
                                urn.rsplit("::", 1)[-1],
                                "delete",
                                provider_called=["Delete"],
                            )
                        )
        return RehearsalRun(preview=preview, program=program, results=results)

    def _failed(self, mocks: RehearsalMocks, *, preview: bool) -> RehearsalError:
        """The run's error, with the stack outputs the engine keeps after it."""
        assert mocks.error is not None
        failure = mocks.events.first("failed")
        cut = failure.seq if failure is not None else -1
        before = [e for e in mocks.events.of_kind("stack-outputs") if e.seq < cut]
        kept = dict(self.state.outputs)
        if before:
            kept.update(before[-1].data)
        if not preview:
            self.state.outputs = kept
        mocks.error.exports = kept
        mocks.error.events = list(mocks.events.events)
        return mocks.error


def backups_in_test_root(
    root: str, backup_dir: str, host: str, port: int, user: str, password: str, bindir: str
) -> dict[str, Rewrite]:
    """Rewrites that run the program's Backup and RestoreDrill in the test root (the chroot
    executor, the test server over loopback, a backup directory in the root) instead of
    ``docker exec`` into a container this machine does not have. Everything else about them -
    the provider, the decisions, the script - is the program's own."""

    def rewrite(inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            **inputs,
            "executor": {"kind": "chroot", "root": root},
            "backupDir": backup_dir,
            "connection": {
                "PGHOST": host,
                "PGPORT": str(port),
                "PGUSER": user,
                "bindir": bindir,
            },
            "password": password,
            "pushgatewayUrl": "",
        }

    return {BACKUP: rewrite, RESTORE_DRILL: rewrite}


def rehearsal_on_test_server(
    stack: str,
    *,
    server: Any,
    database_dsn: str,
    migrations_dir: Path,
    root: str,
    backup_dir: str,
    bindir: str,
    config: Mapping[str, object] | None = None,
) -> Rehearsal:
    """A :class:`Rehearsal` of ``stack`` pointed at a test server (``ms5_testenv``'s
    PostgresServer) and one of its databases through the stack's config alone, with its
    migrations in ``migrations_dir`` and its Backup and RestoreDrill in the test root
    (:func:`backups_in_test_root`); ``config`` adds to or overrides that config."""
    from psycopg.conninfo import conninfo_to_dict

    return Rehearsal(
        stack,
        {
            "ms5:bindAddress": server.host,
            "ms5:dbPort": server.port,
            "ms5:dbSuperuser": server.user,
            "ms5:dbPassword": server.password,
            "ms5:dbName": str(conninfo_to_dict(database_dsn)["dbname"]),
            "ms5:migrationsDir": str(migrations_dir),
            **(config or {}),
        },
        rewrites=backups_in_test_root(
            root, backup_dir, server.host, server.port, server.user, server.password, bindir
        ),
    )
