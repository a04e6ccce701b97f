"""Resource rules for Docker images and containers (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ms5_policy.model import (
    CONTAINER,
    REMOTE_IMAGE,
    Context,
    Finding,
    Resource,
    Unchecked,
    Unknown,
    Violation,
    env_map,
    is_database,
    is_grafana,
    is_prometheus,
    is_unknown,
    labels,
    number,
    pgdata_path,
    strings,
    unknown_envs,
    uploads,
)

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


def _image_problem(reference: str, ctx: Context) -> str | None:
    """Why an image reference is not pinned enough for the tier (None when it is)."""
    if _IMAGE_ID.match(reference):
        return None  # a local image id (a RemoteImage's imageId): content-addressed
    has_digest = bool(_DIGEST.search(reference))
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not has_digest and tag in ("", "latest"):
        return "has no tag or the tag latest (it changes under you)"
    if ctx.production and not has_digest and ctx.config.get("requireDigest", True):
        return "has no @sha256:<digest>; production runs exactly the image that was reviewed"
    return None


def images_pinned(resource: Resource, ctx: Context) -> list[Finding]:
    """Images are pinned: never latest or untagged, and by digest in production."""
    if resource.type == REMOTE_IMAGE:
        key = "name"
    elif resource.type == CONTAINER:
        key = "image"
    else:
        return []
    reference = resource.props.get(key)
    if isinstance(reference, Unknown):
        return [Unchecked(f"{resource.label}: {key} (comes from another resource's output)")]
    if not isinstance(reference, str):
        return [Violation(f"{resource.label}: {key} is missing; set a pinned image reference.")]
    problem = _image_problem(reference, ctx)
    if problem is None:
        return []
    return [
        Violation(
            f"{resource.label}: {key} {problem}. Pin it: `./ms5 pin-images <stack>` writes "
            "repo:tag@sha256:<digest> into the stack file."
        )
    ]


_DANGEROUS_CAPABILITIES = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "NET_ADMIN", "DAC_READ_SEARCH"}
)


def no_privileged_containers(resource: Resource, ctx: Context) -> list[Finding]:
    """No privileged container and no capability that amounts to root on the host."""
    if resource.type != CONTAINER:
        return []
    out: list[Finding] = []
    privileged = resource.props.get("privileged")
    if isinstance(privileged, Unknown):
        out.append(Unchecked(f"{resource.label}: privileged"))
    elif privileged:
        out.append(Violation(f"{resource.label}: privileged is true; remove it (set false)."))
    caps = resource.props.get("capabilities")
    if isinstance(caps, Mapping):
        adds = caps.get("adds")
        if is_unknown(adds):
            out.append(Unchecked(f"{resource.label}: capabilities.adds"))
        else:
            bad = sorted(
                {str(c).upper().removeprefix("CAP_") for c in strings(adds)}
                & _DANGEROUS_CAPABILITIES
            )
            if bad:
                out.append(
                    Violation(
                        f"{resource.label}: capabilities.adds grants {', '.join(bad)}; drop them "
                        "and add only the narrow capabilities the entrypoint needs."
                    )
                )
    return out


_NAMESPACE_KEYS = ("networkMode", "pidMode", "ipcMode", "usernsMode", "cgroupnsMode", "utsMode")


def no_host_namespaces(resource: Resource, ctx: Context) -> list[Finding]:
    """Containers never share the host's network, PID, IPC, user, cgroup or UTS namespace."""
    if resource.type != CONTAINER:
        return []
    out: list[Finding] = []
    for key in _NAMESPACE_KEYS:
        value = resource.props.get(key)
        if isinstance(value, Unknown):
            out.append(Unchecked(f"{resource.label}: {key}"))
        elif isinstance(value, str) and value.lower() == "host":
            out.append(
                Violation(
                    f"{resource.label}: {key} is host; remove it (the container gets its own "
                    "namespace; join the stack network with networksAdvanced)."
                )
            )
    return out


_SENSITIVE_HOST_PATHS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/var/run",
    "/run",
)


def _sensitive(path: str) -> bool:
    clean = "/" + path.strip("/")
    if clean == "/" or clean.endswith("docker.sock"):
        return True
    return any(clean == p or clean.startswith(p + "/") for p in _SENSITIVE_HOST_PATHS)


def no_sensitive_host_mounts(resource: Resource, ctx: Context) -> list[Finding]:
    """No Docker socket, host root or system directory mounted into a container, no host device."""
    if resource.type != CONTAINER:
        return []
    out: list[Finding] = []
    sources: list[tuple[str, Any]] = []
    for i, volume in enumerate(strings(resource.props.get("volumes"))):
        if isinstance(volume, Mapping) and "hostPath" in volume:
            sources.append((f"volumes[{i}].hostPath", volume["hostPath"]))
    for i, mount in enumerate(strings(resource.props.get("mounts"))):
        if isinstance(mount, Mapping) and str(mount.get("type", "")).lower() == "bind":
            sources.append((f"mounts[{i}].source", mount.get("source")))
    for where, source in sources:
        if isinstance(source, Unknown):
            out.append(Unchecked(f"{resource.label}: {where}"))
        elif isinstance(source, str) and _sensitive(source):
            out.append(
                Violation(
                    f"{resource.label}: {where} mounts a sensitive host path (Docker socket or "
                    "a system directory); use a named docker.Volume instead."
                )
            )
    if strings(resource.props.get("devices")):
        out.append(Violation(f"{resource.label}: devices maps host devices; remove them."))
    return out


def no_new_privileges(resource: Resource, ctx: Context) -> list[Finding]:
    """Every container runs with no-new-privileges (setuid binaries cannot gain privileges)."""
    if resource.type != CONTAINER:
        return []
    opts = resource.props.get("securityOpts")
    if is_unknown(opts):
        return [Unchecked(f"{resource.label}: securityOpts")]
    if {str(o) for o in strings(opts)} & {"no-new-privileges:true", "no-new-privileges"}:
        return []
    return [Violation(f'{resource.label}: securityOpts lacks "no-new-privileges:true"; add it.')]


def resource_limits(resource: Resource, ctx: Context) -> list[Finding]:
    """Every container has memory and CPU limits; the database also sizes /dev/shm."""
    if resource.type != CONTAINER:
        return []
    out: list[Finding] = []
    props = resource.props
    for key, what in (("memory", "a memory limit in MiB"),):
        value = props.get(key)
        if isinstance(value, Unknown):
            out.append(Unchecked(f"{resource.label}: {key}"))
        elif not (number(value) or 0) > 0:
            out.append(Violation(f"{resource.label}: {key} is not set; set {what}."))
    cpus, cpu_set = props.get("cpus"), props.get("cpuSet")
    if isinstance(cpus, Unknown):
        out.append(Unchecked(f"{resource.label}: cpus"))
    elif not cpus and not cpu_set:
        out.append(
            Violation(f'{resource.label}: cpus is not set; set a CPU limit (e.g. cpus="2").')
        )
    if is_database(resource):
        shm = props.get("shmSize")
        memory = number(props.get("memory"))
        if isinstance(shm, Unknown):
            out.append(Unchecked(f"{resource.label}: shmSize"))
        elif not (number(shm) or 0) > 0:
            out.append(
                Violation(
                    f"{resource.label}: shmSize is not set; parallel query workers need /dev/shm "
                    "(set ms5:dbShmSizeMb)."
                )
            )
        elif memory and (number(shm) or 0) >= memory:
            out.append(
                Violation(f"{resource.label}: shmSize is not below memory; lower ms5:dbShmSizeMb.")
            )
    return out


def health_checks(resource: Resource, ctx: Context) -> list[Finding]:
    """Every container has a health check that passes only when the service answers.

    Who waits for it (``wait=true`` or a ContainerHealth gate) is the stack policy
    containers-awaited-healthy.
    """
    if resource.type != CONTAINER:
        return []
    check = resource.props.get("healthcheck")
    if is_unknown(check):
        return [Unchecked(f"{resource.label}: healthcheck")]
    tests = strings(check.get("tests")) if isinstance(check, Mapping) else []
    if not tests or str(tests[0]).upper() == "NONE":
        return [
            Violation(
                f"{resource.label}: healthcheck is missing; add one that passes only when the "
                "service answers (healthcheck.tests)."
            )
        ]
    return []


_RESTART_OK = ("always", "unless-stopped", "on-failure")


def restart_policy(resource: Resource, ctx: Context) -> list[Finding]:
    """Every container restarts after a crash (restart always, unless-stopped or on-failure)."""
    if resource.type != CONTAINER:
        return []
    value = resource.props.get("restart")
    if isinstance(value, Unknown):
        return [Unchecked(f"{resource.label}: restart")]
    if isinstance(value, str) and value.split(":", 1)[0] in _RESTART_OK:
        return []
    return [
        Violation(
            f"{resource.label}: restart is not set or is no; set unless-stopped "
            "(ms5:dbRestartPolicy for the database)."
        )
    ]


def log_rotation(resource: Resource, ctx: Context) -> list[Finding]:
    """Container logs rotate: json-file with max-size and max-file, or the local driver."""
    if resource.type != CONTAINER:
        return []
    driver = resource.props.get("logDriver")
    opts = resource.props.get("logOpts")
    if is_unknown(driver) or is_unknown(opts):
        return [Unchecked(f"{resource.label}: logDriver/logOpts")]
    if driver == "local":
        return []
    if (
        driver == "json-file"
        and isinstance(opts, Mapping)
        and opts.get("max-size")
        and opts.get("max-file")
    ):
        return []
    return [
        Violation(
            f"{resource.label}: logs do not rotate; set logDriver json-file with logOpts "
            "max-size and max-file (ms5:dbLogMaxSize, ms5:dbLogMaxFiles)."
        )
    ]


LOOPBACK = ("127.", "::1", "localhost")
NON_LOOPBACK_LABEL = "ms5.allow-non-loopback-bind"


def ports_bound_to_loopback(resource: Resource, ctx: Context) -> list[Finding]:
    """Published ports bind to loopback unless the stack opted in (ms5:allowNonLoopbackBind)."""
    if resource.type != CONTAINER:
        return []
    opted_in = labels(resource.props).get(NON_LOOPBACK_LABEL) == "true"
    out: list[Finding] = []
    for i, port in enumerate(strings(resource.props.get("ports"))):
        if not isinstance(port, Mapping):
            continue
        ip = port.get("ip")
        if isinstance(ip, Unknown):
            out.append(Unchecked(f"{resource.label}: ports[{i}].ip"))
        elif not (isinstance(ip, str) and ip.startswith(LOOPBACK)) and not opted_in:
            out.append(
                Violation(
                    f"{resource.label}: ports[{i}] is published on a non-loopback address (or "
                    "on all addresses when ip is unset); bind it to 127.0.0.1, or opt in "
                    "deliberately with ms5:allowNonLoopbackBind (label "
                    f"{NON_LOOPBACK_LABEL}=true) behind a firewall."
                )
            )
    return out


def pgdata_on_named_volume(resource: Resource, ctx: Context) -> list[Finding]:
    """The database keeps PGDATA on a named volume, never in the container or a bind mount."""
    if not is_database(resource):
        return []
    path = pgdata_path(resource)
    for i, volume in enumerate(strings(resource.props.get("volumes"))):
        if not isinstance(volume, Mapping) or volume.get("containerPath") != path:
            continue
        name = volume.get("volumeName")
        if isinstance(name, Unknown):
            return [Unchecked(f"{resource.label}: volumes[{i}].volumeName")]
        if isinstance(name, str) and name and not volume.get("hostPath"):
            return []
        return [
            Violation(
                f"{resource.label}: volumes[{i}] puts PGDATA on a bind mount or an anonymous "
                "volume, which is lost or shared on replace; mount a named docker.Volume there."
            )
        ]
    return [
        Violation(
            f"{resource.label}: PGDATA has no volume (data lives in the container and is lost "
            "on replace); mount a named docker.Volume at the PGDATA path."
        )
    ]


def database_delete_before_replace(resource: Resource, ctx: Context) -> list[Finding]:
    """The database container is deleted before its replacement starts (one server per PGDATA)."""
    if not is_database(resource):
        return []
    if resource.options.delete_before_replace:
        return []
    return [
        Violation(
            f"{resource.label}: deleteBeforeReplace is not set; set "
            "ResourceOptions(delete_before_replace=True) so two servers never share PGDATA."
        )
    ]


_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|_PASS$)", re.I)
_AFTER_SCHEME = re.compile(r"(?=://(\S*))")
"""What follows each ``://`` up to white space (overlapping: a URL may follow another)."""
_SECRET_FLAG = re.compile(r"^--?[\w.-]*(password|passwd|secret|token)[\w.-]*=", re.I)
_SECRET_PATH = re.compile(r"(secret|password|passwd|token|\.key$|\.pem$)", re.I)


def _password_after_scheme(rest: str) -> str | None:
    """The password in the authority that starts ``rest`` (the text after a ``://``), if any."""
    try:
        return urlsplit(f"x://{rest}").password
    except ValueError:
        # A malformed host (``[`` without ``]``): read the authority the way urlsplit does, up to
        # the first / ? or #; its userinfo is before the last @, the password after the first :.
        authority = re.split(r"[/?#]", rest)[0]
        return authority.rpartition("@")[0].partition(":")[2]


def has_credential_url(text: str) -> bool:
    """Whether ``text`` holds a URL with a password in its authority (``scheme://user:pw@host``).
    An ``@`` in the path, query or fragment (``http://host:80/x@y``) is not userinfo."""
    return any(_password_after_scheme(m.group(1)) for m in _AFTER_SCHEME.finditer(text))


def secrets_not_in_plain_sight(resource: Resource, ctx: Context) -> list[Finding]:
    """Secrets reach containers only as secret file uploads, never in env, flags or URLs.

    The Python policy SDK hands rules plain values (the engine's secret markers are removed), so
    this rule checks what it can see; that every password-like input is a Pulumi secret is
    checked on the program's own registrations by tests/policy/test_pack.py.
    """
    if resource.type != CONTAINER:
        return []
    out: list[Finding] = []
    if unknown_envs(resource.props):
        out.append(Unchecked(f"{resource.label}: envs"))
    for name, value in sorted(env_map(resource.props).items()):
        if name.endswith("_FILE"):
            continue
        if _SECRET_NAME.search(name) and value != "":
            out.append(
                Violation(
                    f"{resource.label}: envs {name} carries a secret in the environment "
                    f"(docker inspect shows it); upload it as a file and set {name}_FILE."
                )
            )
        elif isinstance(value, str) and has_credential_url(value):
            out.append(
                Violation(
                    f"{resource.label}: envs {name} is a URL with a password in it; pass the "
                    "password as an uploaded file instead."
                )
            )
    for key in ("command", "entrypoints"):
        for i, arg in enumerate(strings(resource.props.get(key))):
            if isinstance(arg, str) and (_SECRET_FLAG.match(arg) or has_credential_url(arg)):
                out.append(
                    Violation(
                        f"{resource.label}: {key}[{i}] passes a secret on the command line "
                        "(visible in ps and docker inspect); read it from an uploaded file."
                    )
                )
    secret_files = [
        str(u.get("file"))
        for u in uploads(resource.props)
        if _SECRET_PATH.search(str(u.get("file")))
    ]
    if secret_files and "uploads" not in resource.options.additional_secret_outputs:
        out.append(
            Violation(
                f"{resource.label}: uploads include secret files ({', '.join(secret_files)}) but "
                'additionalSecretOutputs lacks "uploads"; add it so state keeps them encrypted.'
            )
        )
    return out


def grafana_hardened(resource: Resource, ctx: Context) -> list[Finding]:
    """Grafana has a non-default admin password from a secret file; anonymous access and
    sign-up are off."""
    if not is_grafana(resource):
        return []
    envs = env_map(resource.props)
    out: list[Finding] = []
    if unknown_envs(resource.props):
        out.append(Unchecked(f"{resource.label}: envs"))
    password_file = envs.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
    inline = envs.get("GF_SECURITY_ADMIN_PASSWORD")
    if inline is not None:
        if inline in ("", "admin"):
            out.append(
                Violation(
                    f"{resource.label}: GF_SECURITY_ADMIN_PASSWORD is Grafana's default; set "
                    "ms5:grafanaAdminPassword (or let the program generate one)."
                )
            )
    elif not password_file:
        out.append(
            Violation(
                f"{resource.label}: no admin password is configured, so Grafana keeps admin/admin; "
                "set GF_SECURITY_ADMIN_PASSWORD__FILE to an uploaded secret file."
            )
        )
    else:
        files = {str(u.get("file")): u.get("content") for u in uploads(resource.props)}
        if password_file not in files:
            out.append(
                Violation(
                    f"{resource.label}: GF_SECURITY_ADMIN_PASSWORD__FILE names a file that is not "
                    "uploaded; upload the admin password there."
                )
            )
        elif isinstance(files[password_file], Unknown):
            out.append(Unchecked(f"{resource.label}: the admin password file's content"))
        elif str(files[password_file]).strip() in ("", "admin"):
            out.append(
                Violation(
                    f"{resource.label}: the uploaded admin password is Grafana's default; set "
                    "ms5:grafanaAdminPassword to a generated secret."
                )
            )
    for key, what in (
        ("GF_AUTH_ANONYMOUS_ENABLED", "anonymous access"),
        ("GF_USERS_ALLOW_SIGN_UP", "sign-up"),
    ):
        if str(envs.get(key, "")).lower() != "false":
            out.append(
                Violation(f"{resource.label}: {what} is not explicitly off; set {key}=false.")
            )
    return out


def prometheus_hardened(resource: Resource, ctx: Context) -> list[Finding]:
    """Prometheus runs without its admin and lifecycle APIs and with time and size retention."""
    if not is_prometheus(resource):
        return []
    args = [str(a) for a in strings(resource.props.get("command"))]
    out: list[Finding] = []
    for flag, what in (
        ("--web.enable-admin-api", "the admin API (deletes series, snapshots the TSDB)"),
        ("--web.enable-lifecycle", "the lifecycle API (remote shutdown and reload)"),
    ):
        if any(a == flag or a.startswith(flag + "=") for a in args):
            out.append(Violation(f"{resource.label}: command enables {what}; remove {flag}."))
    for flag, key in (
        ("--storage.tsdb.retention.time=", "ms5:prometheusRetention"),
        ("--storage.tsdb.retention.size=", "ms5:prometheusRetentionSize"),
    ):
        if not any(a.startswith(flag) and len(a) > len(flag) for a in args):
            out.append(Violation(f"{resource.label}: command lacks {flag}<value>; set {key}."))
    return out
