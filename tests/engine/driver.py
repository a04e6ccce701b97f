"""``pulumi up`` of the real program on a real Docker engine, without the Pulumi CLI.

The program runs under mocks as in the rehearsal (``tests/rehearsal.py``): dynamic resources run in a
real provider host. In addition, every ``docker:index/*`` resource is *created on the engine* when
the program registers it — so in dependency order, each one after the resources its inputs and
``depends_on`` name — the way terraform-provider-docker (bridged by pulumi-docker) creates it:

- ``RemoteImage``: the image is looked up locally (``findImage``); a pull is attempted only when it
  is missing (and fails here: no registry). State: ``imageId`` = the image ID, ``repoDigest`` =
  the image's only repo digest or "" (local stand-ins have none); the id is ``imageId + name``.
  ``keep_locally`` keeps it on delete. A changed ``name`` (ForceNew) replaces it: the new image is
  looked up first, then the old one is dropped from state and, being kept locally, left on the
  engine.
- ``Network`` / ``Volume``: created with name, driver and labels.
- ``Container``: ``ContainerCreate`` with the provider's config/hostConfig mapping (memory MB ->
  bytes, ``memory_swap`` MB unless -1, ``shm_size`` MB, ``cpus`` -> NanoCPUs, capabilities
  add/drop, security options, log driver/options, restart policy, published ports with their host
  IP, health check durations parsed as Go durations, labels, envs, command, entrypoint, binds for
  named volumes, ``network_mode`` defaulting to ``bridge``, ``init`` false); then disconnect from
  ``bridge`` and connect every ``networks_advanced`` entry with its aliases; uploads copied as a
  tar archive to ``/`` BEFORE start; start; with ``wait``, poll until healthy within
  ``wait_timeout`` (the provider's own error on timeout; the container stays); then the provider's
  READ, which gives the state (:func:`container_state`).
- On a later run, the new inputs are diffed against that state the way the provider's schema
  does (ForceNew attributes replace, others update, defaults filled in, sets unordered,
  ``ignoreChanges`` honoured); a replacement of a resource with ``deleteBeforeReplace`` deletes
  first (stop with ``destroy_grace_seconds``, force remove, wait). An update is applied with
  ``ContainerUpdate`` for the attributes the provider updates (restart, memory, ...).

Grafana has no image on this machine (no package anywhere reachable): its image and container are
not created; they get mocked outputs and are reported as skipped with the reason.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

import ms5_dockerenv
import ms5_testenv
from harness import ProgramMocks, current_request, unwrap
from rehearsal import (
    Rehearsal,
    RehearsalError,
    RehearsalMocks,
    ResourceResult,
    StateEntry,
    _engine_values,
)

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DOCKER_TYPES = (CONTAINER, NETWORK, VOLUME, REMOTE_IMAGE)

SKIPPED_COMPONENTS = {"grafana": ms5_dockerenv.GRAFANA_SKIPPED}
"""Logical-name fragments of resources not created on the engine, and why."""

CONTAINER_FAILED_HEALTHY = "container failed to be in healthy state"
"""terraform-provider-docker's error when ``wait`` times out."""


class EngineError(Exception):
    """A Docker call failed as the provider would fail (the message is the provider's)."""


# --------------------------------------------------------------------------------------------------
# Go durations (the provider parses inputs with time.ParseDuration and stores Duration.String())
# --------------------------------------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNITS["h"] = 60 * _UNITS["m"]


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string (``5s``, ``1m30s``, ``500ms``); 0 for an invalid one,
    as the provider ignores the parse error."""
    if text in ("0", ""):
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return 0
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` for the values health checks use."""
    if ns == 0:
        return "0s"
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    hours, rest = divmod(ns, _UNITS["h"])
    minutes, rest = divmod(rest, _UNITS["m"])
    seconds = _trim(rest / 10**9)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def nano_cpus_string(nano: int) -> str:
    """The provider's ``nanoInt64ToDecimalString`` (how ``cpus`` reads back)."""
    if nano == 0:
        return "0"
    whole, frac = divmod(nano, 10**9)
    text = f"{whole}.{frac:09d}"
    if text.count("0") == 9:
        return f"{whole}.{str(frac).zfill(9)[:1]}"
    return text.rstrip("0")


def parse_cpus(text: str) -> int:
    """docker/cli ``opts.ParseCPUs``: a decimal number of CPUs to NanoCPUs."""
    from decimal import Decimal

    nano = Decimal(text) * Decimal(10**9)
    if nano != nano.to_integral_value():
        raise EngineError(f"Error setting cpus: value is too precise: {text}")
    return int(nano)


# --------------------------------------------------------------------------------------------------
# Input normalisation: numbers from the mocks arrive as floats
# --------------------------------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _sorted_json(values: Any) -> list[str]:
    return sorted(json.dumps(v, sort_keys=True) for v in values or [])


# --------------------------------------------------------------------------------------------------
# Container: the create path
# --------------------------------------------------------------------------------------------------

_MAPPED_INPUTS = frozenset(
    {
        "name", "hostname", "image", "command", "entrypoints", "envs", "uploads", "volumes",
        "networksAdvanced", "ports", "healthcheck", "wait", "waitTimeout", "restart", "memory",
        "memorySwap", "cpus", "shmSize", "securityOpts", "capabilities", "logDriver", "logOpts",
        "stopSignal", "stopTimeout", "destroyGraceSeconds", "labels", "readOnly", "user",
        "workingDir", "tmpfs", "maxRetryCount", "mustRun", "start", "init",
    }
)  # fmt: skip
"""Inputs whose mapping this driver implements; any other fails loudly (no silent gaps)."""

# Schema of the attributes the driver maps: ForceNew (replace) vs in-place update.
_FORCE_NEW = frozenset(
    {
        "name", "hostname", "image", "command", "entrypoints", "envs", "uploads", "volumes",
        "networksAdvanced", "ports", "securityOpts", "capabilities", "logDriver", "logOpts",
        "stopSignal", "stopTimeout", "shmSize", "cpus", "readOnly", "labels", "user",
        "workingDir", "init",
    }
)  # fmt: skip
_SET_ATTRS = frozenset({"envs", "securityOpts", "labels", "volumes", "uploads", "networksAdvanced"})
_UPDATABLE = ("restart", "maxRetryCount", "memory", "memorySwap")


def create_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ContainerCreate request body (config + hostConfig) for the provider's inputs."""
    unknown = sorted(set(inputs) - _MAPPED_INPUTS)
    if unknown:
        raise EngineError(
            f"the engine driver does not map the container inputs {unknown}: add their "
            "terraform-provider-docker mapping to tests/engine/driver.py"
        )
    config: dict[str, Any] = {
        "Image": inputs["image"],
        "Hostname": inputs.get("hostname", ""),
        "Domainname": "",
        "Tty": False,
        "OpenStdin": False,
        "StopSignal": inputs.get("stopSignal", ""),
    }
    if "stopTimeout" in inputs:
        config["StopTimeout"] = int(inputs["stopTimeout"])
    if inputs.get("envs"):
        config["Env"] = list(inputs["envs"])
    if inputs.get("command"):
        if any(c == "" for c in inputs["command"]):
            raise EngineError("values for command may not be empty")
        config["Cmd"] = list(inputs["command"])
    if inputs.get("entrypoints"):
        config["Entrypoint"] = list(inputs["entrypoints"])
    if inputs.get("user"):
        config["User"] = inputs["user"]
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in inputs.get("ports") or []:
        key = f"{int(port['internal'])}/{port.get('protocol', 'tcp')}"
        exposed[key] = {}
        binding = {"HostIp": port.get("ip", "0.0.0.0")}
        if port.get("external") is not None:
            binding["HostPort"] = str(int(port["external"]))
        bindings.setdefault(key, []).append(binding)
    if exposed:
        config["ExposedPorts"] = exposed
    if inputs.get("workingDir"):
        config["WorkingDir"] = inputs["workingDir"]
    binds: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for vol in inputs.get("volumes") or []:
        path = vol.get("containerPath", "")
        source = vol.get("hostPath") or vol.get("volumeName") or ""
        mode = "ro" if vol.get("readOnly") else "rw"
        volumes[path] = {}
        if source:
            binds.append(f"{source}:{path}:{mode}")
    if volumes:
        config["Volumes"] = volumes
    if inputs.get("labels"):
        config["Labels"] = {x["label"]: x["value"] for x in inputs["labels"]}
    health = inputs.get("healthcheck")
    if health:
        config["Healthcheck"] = {
            "Test": list(health.get("tests") or []),
            "Interval": parse_duration(health.get("interval", "0s")),
            "Timeout": parse_duration(health.get("timeout", "0s")),
            "StartPeriod": parse_duration(health.get("startPeriod", "0s")),
            "StartInterval": parse_duration(health.get("startInterval", "0s")),
            "Retries": int(health.get("retries", 0)),
        }
    host: dict[str, Any] = {
        "Privileged": False,
        "PublishAllPorts": False,
        "RestartPolicy": {
            "Name": inputs.get("restart", "no"),
            "MaximumRetryCount": int(inputs.get("maxRetryCount", 0)),
        },
        "Runtime": "",
        "Mounts": [],
        "AutoRemove": False,
        "ReadonlyRootfs": bool(inputs.get("readOnly", False)),
        "LogConfig": {"Type": inputs.get("logDriver", "")},
        "NetworkMode": "bridge",
        "Init": bool(inputs.get("init", False)),
    }
    if inputs.get("tmpfs"):
        host["Tmpfs"] = dict(inputs["tmpfs"])
    if bindings:
        host["PortBindings"] = bindings
    if binds:
        host["Binds"] = binds
    caps = inputs.get("capabilities")
    if caps:
        host["CapAdd"] = list(caps.get("adds") or [])
        host["CapDrop"] = list(caps.get("drops") or [])
    if inputs.get("securityOpts"):
        host["SecurityOpt"] = list(inputs["securityOpts"])
    if inputs.get("memory"):
        host["Memory"] = int(inputs["memory"]) * 1024 * 1024
    if inputs.get("memorySwap"):
        swap = int(inputs["memorySwap"])
        host["MemorySwap"] = swap * 1024 * 1024 if swap > 0 else swap
    if inputs.get("shmSize"):
        host["ShmSize"] = int(inputs["shmSize"]) * 1024 * 1024
    if inputs.get("cpus"):
        host["NanoCpus"] = parse_cpus(str(inputs["cpus"]))
    if inputs.get("logOpts"):
        host["LogConfig"]["Config"] = {k: str(v) for k, v in inputs["logOpts"].items()}
    return {**config, "HostConfig": host, "NetworkingConfig": {}}


def upload_archive(uploads: list[Mapping[str, Any]]) -> list[bytes]:
    """One tar archive per upload, as the provider builds them (copied to ``/``)."""
    archives = []
    for upload in uploads:
        content = upload.get("content")
        if content is None:
            raise EngineError("error with upload content: only 'content' is mapped by the driver")
        data = str(content).encode()
        if upload.get("permissions"):
            mode = int(str(upload["permissions"]), 8)
        elif upload.get("executable"):
            mode = 0o744
        else:
            mode = 0o644
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo(str(upload["file"]))
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        archives.append(buf.getvalue())
    return archives


def container_state(inspect: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the provider's READ stores in state (camelCase, as Pulumi outputs), for the attributes
    the program sets. Attributes the READ does not set (envs, labels, uploads, volumes,
    networksAdvanced, wait, waitTimeout, destroyGraceSeconds) keep their input values."""
    cfg = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    state = inspect.get("State") or {}
    out: dict[str, Any] = dict(inputs)
    out["name"] = str(inspect.get("Name", "")).lstrip("/")
    image_input = str(inputs.get("image", ""))
    out["image"] = inspect.get("Image") if image_input.startswith("sha256:") else cfg.get("Image")
    out["hostname"] = cfg.get("Hostname")
    out["command"] = cfg.get("Cmd")
    out["entrypoints"] = cfg.get("Entrypoint")
    out["user"] = cfg.get("User")
    out["workingDir"] = cfg.get("WorkingDir")
    out["securityOpts"] = host.get("SecurityOpt")
    out["restart"] = (host.get("RestartPolicy") or {}).get("Name")
    out["maxRetryCount"] = (host.get("RestartPolicy") or {}).get("MaximumRetryCount")
    out["init"] = bool(host.get("Init")) if host.get("Init") is not None else False
    out["readOnly"] = bool(host.get("ReadonlyRootfs"))
    if host.get("CapAdd") or host.get("CapDrop"):
        out["capabilities"] = {"adds": host.get("CapAdd"), "drops": host.get("CapDrop")}
    if (state.get("Running") or inputs.get("mustRun", True)) and inputs.get("ports"):
        out["ports"] = _flatten_ports((inspect.get("NetworkSettings") or {}).get("Ports") or {})
    mib = 1024 * 1024
    out["memory"] = int(host.get("Memory") or 0) // mib
    swap = int(host.get("MemorySwap") or 0)
    out["memorySwap"] = swap // mib if swap > 0 else swap
    out["shmSize"] = int(host.get("ShmSize") or 0) // mib
    nano = int(host.get("NanoCpus") or 0)
    if nano > 0:
        out["cpus"] = nano_cpus_string(nano)
    out["logDriver"] = (host.get("LogConfig") or {}).get("Type")
    out["logOpts"] = (host.get("LogConfig") or {}).get("Config") if inputs.get("logOpts") else None
    out["networkMode"] = host.get("NetworkMode")
    hc = cfg.get("Healthcheck")
    if hc is not None:
        out["healthcheck"] = {
            "tests": hc.get("Test"),
            "interval": format_duration(int(hc.get("Interval") or 0)),
            "timeout": format_duration(int(hc.get("Timeout") or 0)),
            "startPeriod": format_duration(int(hc.get("StartPeriod") or 0)),
            "startInterval": format_duration(int(hc.get("StartInterval") or 0)),
            "retries": int(hc.get("Retries") or 0),
        }
    out["stopSignal"] = cfg.get("StopSignal")
    out["stopTimeout"] = cfg.get("StopTimeout")
    if not state.get("Running"):
        out["exitCode"] = state.get("ExitCode")
        if out.get("mustRun", True):
            out["mustRun"] = False
    return out


def _flatten_ports(ports: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in sorted(ports, key=lambda k: int(k.split("/")[0])):
        for binding in ports[key] or []:
            internal, protocol = key.split("/")
            out.append(
                {
                    "internal": int(internal),
                    "external": int(binding.get("HostPort") or 0),
                    "ip": binding.get("HostIp", ""),
                    "protocol": protocol,
                }
            )
    return out


def _with_defaults(key: str, value: Any) -> Any:
    """An input as the provider's schema sees it (defaults filled in)."""
    if key == "ports":
        return [{"protocol": "tcp", "ip": "0.0.0.0", **p} for p in value or []]
    if key == "healthcheck" and value is not None:
        return {
            "interval": "0s",
            "timeout": "0s",
            "startPeriod": "0s",
            "startInterval": "0s",
            "retries": 0,
            **value,
        }
    if key == "capabilities" and value is not None:
        return {"adds": sorted(value.get("adds") or []), "drops": sorted(value.get("drops") or [])}
    if key in _SET_ATTRS:
        return _sorted_json(value)
    return value


@dataclass(frozen=True)
class Difference:
    """One input whose state form differs."""

    key: str
    input: Any
    state: Any
    replaces: bool


def container_diff(
    inputs: Mapping[str, Any], state: Mapping[str, Any], ignore: tuple[str, ...] = ()
) -> list[Difference]:
    """The provider's plan: each configured attribute compared with state (sets unordered)."""
    diffs = []
    for key in sorted(inputs):
        if key in ignore or key.startswith("__"):
            continue
        new = _with_defaults(key, _norm(inputs[key]))
        old = _with_defaults(key, _norm(state.get(key)))
        if key == "capabilities" and old is not None:
            old = {"adds": sorted(old.get("adds") or []), "drops": sorted(old.get("drops") or [])}
        if new != old:
            diffs.append(Difference(key, new, old, key in _FORCE_NEW))
    return diffs


# --------------------------------------------------------------------------------------------------
# The engine side
# --------------------------------------------------------------------------------------------------


@dataclass
class EngineLog:
    """What the driver did, for the tests to inspect."""

    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, list[Difference]] = field(default_factory=dict)


class EngineDriver:
    """Creates, reads, updates and deletes Docker resources as terraform-provider-docker does."""

    def __init__(self, api: ms5_dockerenv.DockerApi) -> None:
        self.api = api

    # ---- images ----------------------------------------------------------------------------------

    def remote_image(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(inputs["name"])
        found = self.api.image(name)
        if found is None:
            try:
                self.api.request("POST", "/images/create", query={"fromImage": name}, timeout=120)
            except ms5_dockerenv.DockerEnvError as exc:
                raise EngineError(
                    f"Unable to read Docker image into resource: unable to pull image {name}: {exc}"
                ) from None
            found = self.api.image(name)
            if found is None:
                raise EngineError(f"Unable to read Docker image into resource: {name}")
        digests = list(found.get("RepoDigests") or [])
        repo_digest = _repo_digest(name, digests)
        image_id = str(found["Id"])
        return image_id + name, {
            **inputs,
            "imageId": image_id,
            "repoDigest": repo_digest,
            "keepLocally": bool(inputs.get("keepLocally", False)),
        }

    # ---- networks and volumes -------------------------------------------------------------------

    def network(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"Name": inputs["name"], "CheckDuplicate": False}
        if inputs.get("labels"):
            body["Labels"] = {x["label"]: x["value"] for x in inputs["labels"]}
        if inputs.get("driver"):
            body["Driver"] = inputs["driver"]
        created = self.api.request("POST", "/networks/create", body=body)
        net = self.api.request("GET", f"/networks/{created['Id']}")
        return str(created["Id"]), {
            **inputs,
            "driver": net.get("Driver"),
            "scope": net.get("Scope"),
            "ipamConfigs": [
                {
                    "subnet": c.get("Subnet", ""),
                    "gateway": c.get("Gateway", ""),
                    "ipRange": c.get("IPRange", ""),
                    "auxAddress": c.get("AuxiliaryAddresses") or {},
                }
                for c in (net.get("IPAM") or {}).get("Config") or []
            ],
        }

    def volume(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"Name": inputs["name"]}
        if inputs.get("labels"):
            body["Labels"] = {x["label"]: x["value"] for x in inputs["labels"]}
        if inputs.get("driver"):
            body["Driver"] = inputs["driver"]
        vol = self.api.request("POST", "/volumes/create", body=body)
        return str(vol["Name"]), {
            **inputs,
            "driver": vol.get("Driver"),
            "mountpoint": vol.get("Mountpoint"),
        }

    # ---- containers -----------------------------------------------------------------------------

    def create_container(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The provider's create; raises EngineError (with the container id) on failure."""
        image = str(inputs["image"])
        if self.api.image(image) is None:
            raise EngineError(f"Unable to create container with image {image}: not found")
        body = create_body(inputs)
        try:
            created = self.api.request(
                "POST", "/containers/create", query={"name": inputs["name"]}, body=body
            )
        except ms5_dockerenv.DockerApiError as exc:
            raise EngineError(f"Unable to create container: {exc.message}") from None
        cid = str(created["Id"])
        if inputs.get("networksAdvanced"):
            try:
                self.api.request(
                    "POST", "/networks/bridge/disconnect", body={"Container": cid, "Force": False}
                )
            except ms5_dockerenv.DockerApiError as exc:
                if "is not connected to the network bridge" not in exc.message.lower():
                    raise EngineError(
                        f"Unable to disconnect the default network: {exc.message}"
                    ) from None
            for net in inputs["networksAdvanced"]:
                endpoint = {"Aliases": list(net.get("aliases") or []), "IPAMConfig": {}}
                try:
                    self.api.request(
                        "POST",
                        f"/networks/{urllib.parse.quote(str(net['name']), safe='')}/connect",
                        body={"Container": cid, "EndpointConfig": endpoint},
                    )
                except ms5_dockerenv.DockerApiError as exc:
                    raise EngineError(
                        f"Unable to connect to network '{net['name']}': {exc.message}"
                    ) from None
        for archive in upload_archive(list(inputs.get("uploads") or [])):
            try:
                self.api.request(
                    "PUT",
                    f"/containers/{cid}/archive",
                    query={"path": "/"},
                    raw=archive,
                    content_type="application/x-tar",
                )
            except ms5_dockerenv.DockerApiError as exc:
                raise CreateFailed(cid, f"Unable to upload volume content: {exc.message}") from None
        if inputs.get("start", True):
            try:
                self.api.request("POST", f"/containers/{cid}/start")
            except ms5_dockerenv.DockerApiError as exc:
                raise CreateFailed(cid, f"Unable to start container: {exc.message}") from None
            if inputs.get("wait", False):
                self._wait_healthy(cid, int(inputs.get("waitTimeout", 60)))
        return cid, self.read_container(cid, inputs)

    def _wait_healthy(self, cid: str, timeout: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            info = self.inspect(cid)
            health = (info.get("State") or {}).get("Health")
            if health is None:
                raise CreateFailed(
                    cid,
                    "you have supplied a 'wait' argument, but the container does not have a "
                    "healthcheck defined",
                )
            if health.get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                raise CreateFailed(cid, CONTAINER_FAILED_HEALTHY)
            time.sleep(1)

    def inspect(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", f"/containers/{cid}/json")
        return result

    def read_container(self, cid: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return container_state(self.inspect(cid), inputs)

    def update_container(self, cid: str, inputs: Mapping[str, Any]) -> None:
        """The provider's update: ContainerUpdate with restart policy and resources."""
        body: dict[str, Any] = {
            "RestartPolicy": {
                "Name": inputs.get("restart", "no"),
                "MaximumRetryCount": int(inputs.get("maxRetryCount", 0)),
            },
            "CpuShares": 0,
            "Memory": int(inputs.get("memory", 0)) * 1024 * 1024,
            "MemoryReservation": 0,
            "CpusetCpus": "",
        }
        if inputs.get("memorySwap"):
            swap = int(inputs["memorySwap"])
            body["MemorySwap"] = swap * 1024 * 1024 if swap > 0 else swap
        self.api.request("POST", f"/containers/{cid}/update", body=body)

    def delete_container(self, cid: str, inputs: Mapping[str, Any]) -> None:
        """Stop with ``destroy_grace_seconds``, force-remove, wait until not running."""
        grace = int(inputs.get("destroyGraceSeconds") or 0)
        try:
            self.api.request(
                "POST", f"/containers/{cid}/stop", query={"t": grace}, timeout=grace + 60
            )
        except ms5_dockerenv.DockerApiError as exc:
            if "no such container" not in exc.message.lower():
                raise EngineError(f"Error stopping container {cid}: {exc.message}") from None
        try:
            self.api.request(
                "DELETE",
                f"/containers/{cid}",
                query={"v": "1" if inputs.get("removeVolumes", True) else "0", "force": "1"},
            )
        except ms5_dockerenv.DockerApiError as exc:
            if exc.status != 404 and "already in progress" not in exc.message:
                raise EngineError(f"Error deleting container {cid}: {exc.message}") from None
        with _suppress_api(404):
            self.api.request(
                "POST", f"/containers/{cid}/wait", query={"condition": "not-running"}, timeout=60
            )


class CreateFailed(EngineError):
    """Create failed after the container existed: it is kept (the provider set the id)."""

    def __init__(self, container_id: str, message: str) -> None:
        super().__init__(message)
        self.container_id = container_id


class _suppress_api:  # noqa: N801 (used like contextlib.suppress)
    def __init__(self, status: int) -> None:
        self.status = status

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return isinstance(exc, ms5_dockerenv.DockerApiError) and exc.status == self.status


def _repo_digest(name: str, digests: list[str]) -> str:
    if not digests:
        return ""
    if len(digests) == 1:
        return digests[0]
    base = name.split(":", 1)[0]
    return next((d for d in digests if d.startswith(base)), digests[0])


# --------------------------------------------------------------------------------------------------
# The mocks: Docker resources on the engine, dynamic ones through the provider host
# --------------------------------------------------------------------------------------------------


class EngineMocks(RehearsalMocks):
    """RehearsalMocks whose Docker resources are created on the engine."""

    driver: EngineDriver
    log: EngineLog

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        if args.typ not in DOCKER_TYPES:
            return super().new_resource(args)
        urn = self.urn(args)
        self.seen.add(urn)
        inputs = _norm(unwrap(_engine_values(args.inputs)))
        if self.error is not None or self.preview:
            return "", dict(inputs)
        reason = next((r for k, r in SKIPPED_COMPONENTS.items() if k in args.name), None)
        if reason is not None:
            self.log.skipped[args.name] = reason
            return ProgramMocks.new_resource(self, args)
        request = current_request()
        ignore = tuple(request.ignoreChanges) if request is not None else ()
        dbr = bool(request.deleteBeforeReplace) if request is not None else False
        try:
            return self._docker(urn, args, inputs, ignore=ignore, delete_before_replace=dbr)
        except EngineError as exc:
            self.fail(urn, _as_rehearsal_error(urn, exc, self.results))
            return "", dict(inputs)

    def _docker(
        self,
        urn: str,
        args: pulumi.runtime.MockResourceArgs,
        inputs: dict[str, Any],
        *,
        ignore: tuple[str, ...],
        delete_before_replace: bool,
    ) -> tuple[str, dict[str, Any]]:
        old = self.state.resources.get(urn)
        if args.typ == CONTAINER and old is not None:
            current = self.driver.read_container(old.id, old.outputs)
            diffs = container_diff(inputs, current, ignore)
            self.log.diffs[args.name] = diffs
            if not diffs:
                self.log.same.append(args.name)
                self._result(urn, args, "same", current)
                return old.id, current
            if not any(d.replaces for d in diffs):
                self.driver.update_container(old.id, inputs)
                outputs = self.driver.read_container(old.id, {**current, **inputs})
                self.state.resources[urn] = StateEntry(args.typ, old.id, inputs, outputs)
                self.log.updated.append(args.name)
                self._result(urn, args, "update", outputs, [d.key for d in diffs])
                return old.id, outputs
            # Without deleteBeforeReplace the engine creates the replacement first (under the
            # same name: Docker refuses it, as it would refuse the real provider).
            if delete_before_replace:
                self.driver.delete_container(old.id, old.outputs)
            try:
                id_, outputs = self.driver.create_container(inputs)
            except CreateFailed as exc:
                self.state.resources[urn] = StateEntry(args.typ, exc.container_id, inputs, inputs)
                raise
            if not delete_before_replace:
                self.driver.delete_container(old.id, old.outputs)
            self.state.resources[urn] = StateEntry(args.typ, id_, inputs, outputs)
            self.log.replaced.append(args.name)
            self._result(urn, args, "update", outputs, [d.key for d in diffs])
            return id_, outputs
        if old is not None:
            # Images, networks and volumes: inputs unchanged -> same.
            if _norm(old.inputs) == inputs:
                self.log.same.append(args.name)
                self._result(urn, args, "same", old.outputs)
                return old.id, old.outputs
            if args.typ == REMOTE_IMAGE and old.outputs.get("keepLocally"):
                id_, outputs = self.driver.remote_image(inputs)
                self.state.resources[urn] = StateEntry(args.typ, id_, inputs, outputs)
                self.log.replaced.append(args.name)
                keys = sorted(
                    k for k in set(inputs) | set(old.inputs) if inputs.get(k) != old.inputs.get(k)
                )
                self._result(urn, args, "update", outputs, keys)
                return id_, outputs
            # The scenarios change no network or volume, nor an image that is not kept locally
            # (its replacement would remove the old image from the engine).
            raise EngineError(f"{urn}: the driver does not replace {args.typ} (inputs changed)")
        if args.typ == REMOTE_IMAGE:
            id_, outputs = self.driver.remote_image(inputs)
        elif args.typ == NETWORK:
            id_, outputs = self.driver.network(inputs)
        elif args.typ == VOLUME:
            id_, outputs = self.driver.volume(inputs)
        else:
            try:
                id_, outputs = self.driver.create_container(inputs)
            except CreateFailed as exc:
                self.state.resources[urn] = StateEntry(args.typ, exc.container_id, inputs, inputs)
                raise
        self.state.resources[urn] = StateEntry(args.typ, id_, inputs, outputs)
        self.log.created.append(args.name)
        self._result(urn, args, "create", outputs)
        return id_, outputs

    def _result(
        self,
        urn: str,
        args: pulumi.runtime.MockResourceArgs,
        op: str,
        outputs: dict[str, Any],
        keys: list[str] | None = None,
    ) -> None:
        self.results.append(
            ResourceResult(urn, args.typ, args.name, op, keys or [], outputs=outputs)  # type: ignore[arg-type]
        )


def _as_rehearsal_error(
    urn: str, exc: EngineError, results: list[ResourceResult]
) -> RehearsalError:
    error = RehearsalError(f"{urn}: {exc}", list(results))
    error.__cause__ = exc
    return error


class EngineRehearsal(Rehearsal):
    """A :class:`Rehearsal` whose Docker resources live on a real engine."""

    def __init__(
        self,
        stack: str,
        config: Mapping[str, object],
        *,
        api: ms5_dockerenv.DockerApi,
        stack_name: str,
    ) -> None:
        super().__init__(stack, config, stand_ins={}, stack_name=stack_name)
        self.driver = EngineDriver(api)
        self.log = EngineLog()
        driver, log = self.driver, self.log

        class _Mocks(EngineMocks):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                self.driver = driver
                self.log = log

        self.mocks_class = _Mocks

    def container_id(self, name_suffix: str) -> str:
        found = [
            e.id
            for urn, e in self.state.resources.items()
            if e.type == CONTAINER and urn.endswith(name_suffix)
        ]
        assert len(found) == 1, f"expected one container *{name_suffix}, got {found}"
        return found[0]

    def entry(self, name_suffix: str) -> StateEntry:
        found = [e for urn, e in self.state.resources.items() if urn.endswith(name_suffix)]
        assert len(found) == 1, f"expected one resource *{name_suffix}"
        return found[0]


def remove_stack(api: ms5_dockerenv.DockerApi, stack_name: str) -> None:
    """Remove containers, then networks and volumes, labelled ``ms5.stack=<stack_name>``."""
    label = {"label": [f"ms5.stack={stack_name}"]}
    for item in api.request("GET", "/containers/json", query={"all": "1", "filters": label}):
        api.request("DELETE", f"/containers/{item['Id']}", query={"force": "1", "v": "1"})
    for net in api.request("GET", "/networks", query={"filters": label}):
        api.request("DELETE", f"/networks/{net['Id']}")
    volumes = api.request("GET", "/volumes", query={"filters": label}).get("Volumes") or []
    for vol in volumes:
        api.request("DELETE", f"/volumes/{vol['Name']}")


def engine_config(engine: ms5_dockerenv.Engine) -> dict[str, object]:
    """Config that points a stack at the engine, with free host ports (other stacks may run)."""
    return {
        "ms5:dockerHost": engine.docker_host,
        "ms5:dbPort": ms5_testenv.free_port(),
        "ms5:prometheusPort": ms5_testenv.free_port(),
        "ms5:pushgatewayPort": ms5_testenv.free_port(),
        "ms5:grafanaPort": ms5_testenv.free_port(),
    }
