"""The container rules (ms5_policy/containers.py) called directly: each rule's findings, compared
whole, for the containers that pass and fail it."""

from __future__ import annotations

import pytest

from ms5_policy import containers
from ms5_policy.model import (
    CONTAINER,
    REMOTE_IMAGE,
    UNKNOWN,
    VOLUME,
    Context,
    Options,
    Resource,
    Unchecked,
    Violation,
)

PROD, STAGING = Context(tier="production"), Context(tier="staging")
DIGEST = "@sha256:" + "a" * 64
DB_ENVS = ["POSTGRES_DB=ms5"]
NOT_A_CONTAINER = Resource(type=VOLUME, name="v", urn="urn:v", props={"privileged": True})


def _c(options: Options | None = None, **props: object) -> Resource:
    return Resource(
        type=CONTAINER, name="c", urn="urn:c", props=props, options=options or Options()
    )


def _v(message: str) -> Violation:
    return Violation("c (Container): " + message)


RESOURCE_RULES = [
    containers.no_privileged_containers,
    containers.no_host_namespaces,
    containers.no_sensitive_host_mounts,
    containers.no_new_privileges,
    containers.resource_limits,
    containers.health_checks,
    containers.restart_policy,
    containers.log_rotation,
    containers.ports_bound_to_loopback,
    containers.pgdata_on_named_volume,
    containers.database_delete_before_replace,
    containers.secrets_not_in_plain_sight,
    containers.grafana_hardened,
    containers.prometheus_hardened,
    containers.images_pinned,
]


@pytest.mark.parametrize("rule", RESOURCE_RULES, ids=lambda r: r.__name__)
def test_rules_judge_only_their_resources(rule):
    assert rule(NOT_A_CONTAINER, PROD) == []


# ---- images_pinned ------------------------------------------------------------------------------

PIN = " Pin it: `./ms5 pin-images <stack>` writes repo:tag@sha256:<digest> into the stack file."


def test_image_findings_name_the_key_and_the_problem():
    assert containers.images_pinned(_c(image="db:latest"), STAGING) == [
        _v("image has no tag or the tag latest (it changes under you)." + PIN)
    ]
    assert containers.images_pinned(_c(image="db:1.0"), PROD) == [
        _v(
            "image has no @sha256:<digest>; production runs exactly the image that was "
            "reviewed." + PIN
        )
    ]
    assert containers.images_pinned(_c(image="db:1.0" + DIGEST), PROD) == []
    assert containers.images_pinned(_c(), PROD) == [
        _v("image is missing; set a pinned image reference.")
    ]
    assert containers.images_pinned(_c(image=UNKNOWN), PROD) == [
        Unchecked("c (Container): image (comes from another resource's output)")
    ]
    image = Resource(type=REMOTE_IMAGE, name="i", urn="urn:i", props={"name": 3})
    assert containers.images_pinned(image, PROD) == [
        Violation("i (RemoteImage): name is missing; set a pinned image reference.")
    ]


@pytest.mark.parametrize(
    "reference",
    [
        "db" + DIGEST + "x",  # the digest must end the reference
        "db@sha256:" + "A" * 64,
        "db@sha256:" + "a" * 63,
        "xsha256:" + "a" * 64,
        "sha256:" + "a" * 64 + "0",
    ],
)
def test_near_digests_are_not_digests(reference):
    assert containers.images_pinned(_c(image=reference + ":1"), PROD) != []


def test_a_tag_is_read_after_the_last_slash_and_before_the_digest():
    assert containers.images_pinned(_c(image="reg:5000/a/db:latest" + DIGEST), PROD) == []
    assert containers.images_pinned(_c(image="reg/a:b/db"), STAGING) != []
    assert containers.images_pinned(_c(image="db:1:2"), STAGING) == []
    relaxed = Context(tier="production", config={"requireDigest": False})
    assert containers.images_pinned(_c(image="db:1.0"), relaxed) == []
    strict = Context(tier="production", config={"requireDigest": True})
    assert containers.images_pinned(_c(image="db:1.0"), strict) != []


# ---- no_privileged_containers -------------------------------------------------------------------


def test_privileged_and_dangerous_capabilities():
    assert containers.no_privileged_containers(_c(privileged=False), PROD) == []
    assert containers.no_privileged_containers(_c(capabilities={"adds": ["CHOWN"]}), PROD) == []
    assert containers.no_privileged_containers(_c(capabilities=["SYS_ADMIN"]), PROD) == []
    bad = _c(privileged=1, capabilities={"adds": ["cap_sys_admin", "NET_ADMIN", "CHOWN", "ALL"]})
    assert containers.no_privileged_containers(bad, PROD) == [
        _v("privileged is true; remove it (set false)."),
        _v(
            "capabilities.adds grants ALL, NET_ADMIN, SYS_ADMIN; drop them and add only the "
            "narrow capabilities the entrypoint needs."
        ),
    ]
    unknown = _c(privileged=UNKNOWN, capabilities={"adds": ["CHOWN", UNKNOWN]})
    assert containers.no_privileged_containers(unknown, PROD) == [
        Unchecked("c (Container): privileged"),
        Unchecked("c (Container): capabilities.adds"),
    ]


# ---- no_host_namespaces -------------------------------------------------------------------------


def test_host_namespaces():
    props = {
        "networkMode": "HOST",
        "pidMode": UNKNOWN,
        "ipcMode": "private",
        "usernsMode": "host",
        "cgroupnsMode": "host",
        "utsMode": "host",
    }
    ns = " is host; remove it (the container gets its own namespace; join the stack network with networksAdvanced)."
    assert containers.no_host_namespaces(_c(**props), PROD) == [
        _v("networkMode" + ns),
        Unchecked("c (Container): pidMode"),
        _v("usernsMode" + ns),
        _v("cgroupnsMode" + ns),
        _v("utsMode" + ns),
    ]
    assert containers.no_host_namespaces(_c(ipcMode="host"), PROD) == [_v("ipcMode" + ns)]
    assert containers.no_host_namespaces(_c(networkMode="bridge"), PROD) == []


# ---- no_sensitive_host_mounts -------------------------------------------------------------------

MOUNT = (
    " mounts a sensitive host path (Docker socket or a system directory); use a named "
    "docker.Volume instead."
)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("/", True),
        ("", True),
        ("//", True),
        ("/home/me/docker.sock", True),
        ("/var/run/docker.sock", True),
        ("/run/docker.sock", True),
        ("/var/lib/docker/volumes", True),
        ("/etc/", True),
        ("etc", True),
        ("/proc/1", True),
        ("/sys", True),
        ("/dev/sda", True),
        ("/boot", True),
        ("/root/.ssh", True),
        ("/var/run", True),
        ("/run/x", True),
        ("/etcetera", False),
        ("/srv/etc", False),
        ("/var/lib/dockerish", False),
        ("/home/me", False),
    ],
)
def test_sensitive_host_paths(path, bad):
    assert containers._sensitive(path) is bad


def test_host_mounts_and_devices():
    props = {
        "volumes": [
            {"hostPath": "/srv/ok", "containerPath": "/a"},
            {"volumeName": "v", "containerPath": "/b"},
            "x",
            {"hostPath": "/etc", "containerPath": "/c"},
        ],
        "mounts": [
            {"type": "BIND", "source": "/var/run/docker.sock"},
            {"type": "volume", "source": "/etc"},
            {"type": "bind", "source": UNKNOWN},
            {"type": "bind", "source": 3},
            "y",
        ],
        "devices": [{"hostPath": "/dev/fuse"}],
    }
    assert containers.no_sensitive_host_mounts(_c(**props), PROD) == [
        _v("volumes[3].hostPath" + MOUNT),
        _v("mounts[0].source" + MOUNT),
        Unchecked("c (Container): mounts[2].source"),
        _v("devices maps host devices; remove them."),
    ]
    assert containers.no_sensitive_host_mounts(_c(mounts=[{"source": "/etc"}]), PROD) == []
    assert containers.no_sensitive_host_mounts(_c(devices=[]), PROD) == []


# ---- no_new_privileges --------------------------------------------------------------------------


def test_no_new_privileges():
    assert containers.no_new_privileges(_c(securityOpts=["no-new-privileges:true"]), PROD) == []
    assert containers.no_new_privileges(_c(securityOpts=["x", "no-new-privileges"]), PROD) == []
    lacks = [_v('securityOpts lacks "no-new-privileges:true"; add it.')]
    assert containers.no_new_privileges(_c(securityOpts=["no-new-privileges:false"]), PROD) == lacks
    assert containers.no_new_privileges(_c(), PROD) == lacks
    assert containers.no_new_privileges(_c(securityOpts=[UNKNOWN]), PROD) == [
        Unchecked("c (Container): securityOpts")
    ]


# ---- resource_limits ----------------------------------------------------------------------------

SHM_UNSET = "shmSize is not set; parallel query workers need /dev/shm (set ms5:dbShmSizeMb)."


def test_resource_limits():
    assert containers.resource_limits(_c(memory=512, cpus="2"), PROD) == []
    assert containers.resource_limits(_c(memory=512, cpuSet="0-1"), PROD) == []
    assert containers.resource_limits(_c(memory=0, cpus=""), PROD) == [
        _v("memory is not set; set a memory limit in MiB."),
        _v('cpus is not set; set a CPU limit (e.g. cpus="2").'),
    ]
    assert containers.resource_limits(_c(memory="512", cpus=UNKNOWN), PROD) == [
        _v("memory is not set; set a memory limit in MiB."),
        Unchecked("c (Container): cpus"),
    ]
    assert containers.resource_limits(_c(memory=UNKNOWN, cpus="1"), PROD) == [
        Unchecked("c (Container): memory")
    ]


def test_database_shared_memory():
    db = {"envs": DB_ENVS, "memory": 1024, "cpus": "2"}
    assert containers.resource_limits(_c(**db, shmSize=256), PROD) == []
    assert containers.resource_limits(_c(**db), PROD) == [_v(SHM_UNSET)]
    assert containers.resource_limits(_c(**db, shmSize=0), PROD) == [_v(SHM_UNSET)]
    assert containers.resource_limits(_c(**db, shmSize=UNKNOWN), PROD) == [
        Unchecked("c (Container): shmSize")
    ]
    above = [_v("shmSize is not below memory; lower ms5:dbShmSizeMb.")]
    assert containers.resource_limits(_c(**db, shmSize=1024), PROD) == above
    assert containers.resource_limits(_c(**db, shmSize=2048), PROD) == above
    assert containers.resource_limits(_c(**{**db, "memory": UNKNOWN}, shmSize=2048), PROD) == [
        Unchecked("c (Container): memory")
    ]
    assert containers.resource_limits(_c(memory=1024, cpus="1", shmSize=0), PROD) == []


# ---- health_checks, restart_policy, log_rotation ------------------------------------------------


def test_health_checks():
    missing = [
        _v(
            "healthcheck is missing; add one that passes only when the service answers "
            "(healthcheck.tests)."
        )
    ]
    assert containers.health_checks(_c(healthcheck={"tests": ["CMD", "true"]}), PROD) == []
    assert containers.health_checks(_c(), PROD) == missing
    assert containers.health_checks(_c(healthcheck={"tests": ["none"]}), PROD) == missing
    assert containers.health_checks(_c(healthcheck={"tests": []}), PROD) == missing
    assert containers.health_checks(_c(healthcheck=["CMD"]), PROD) == missing
    assert containers.health_checks(_c(healthcheck={"tests": ["CMD", UNKNOWN]}), PROD) == [
        Unchecked("c (Container): healthcheck")
    ]


def test_restart_policy_findings():
    assert containers.restart_policy(_c(restart="unless-stopped"), PROD) == []
    assert containers.restart_policy(_c(restart="on-failure"), PROD) == []
    assert containers.restart_policy(_c(restart=UNKNOWN), PROD) == [
        Unchecked("c (Container): restart")
    ]
    assert containers.restart_policy(_c(restart="no:always"), PROD) == [
        _v(
            "restart is not set or is no; set unless-stopped (ms5:dbRestartPolicy for the database)."
        )
    ]


def test_log_rotation():
    rotate = [
        _v(
            "logs do not rotate; set logDriver json-file with logOpts max-size and max-file "
            "(ms5:dbLogMaxSize, ms5:dbLogMaxFiles)."
        )
    ]
    both = {"max-size": "10m", "max-file": "3"}
    assert containers.log_rotation(_c(logDriver="json-file", logOpts=both), PROD) == []
    assert (
        containers.log_rotation(_c(logDriver="json-file", logOpts={"max-size": "10m"}), PROD)
        == rotate
    )
    assert (
        containers.log_rotation(_c(logDriver="json-file", logOpts={"max-file": "3"}), PROD)
        == rotate
    )
    assert containers.log_rotation(_c(logDriver="json-file", logOpts=["max-size"]), PROD) == rotate
    assert containers.log_rotation(_c(logDriver="syslog", logOpts=both), PROD) == rotate
    assert containers.log_rotation(_c(), PROD) == rotate
    unchecked = [Unchecked("c (Container): logDriver/logOpts")]
    assert containers.log_rotation(_c(logDriver=UNKNOWN), PROD) == unchecked
    assert containers.log_rotation(_c(logDriver="local", logOpts={"a": UNKNOWN}), PROD) == unchecked


# ---- ports_bound_to_loopback --------------------------------------------------------------------


def _bind(i: int) -> Violation:
    return _v(
        f"ports[{i}] is published on a non-loopback address (or on all addresses when ip is "
        "unset); bind it to 127.0.0.1, or opt in deliberately with ms5:allowNonLoopbackBind "
        "(label ms5.allow-non-loopback-bind=true) behind a firewall."
    )


def test_ports_bound_to_loopback():
    ports = [
        {"ip": "127.0.0.1"},
        {"ip": "::1"},
        {"ip": "localhost"},
        {"ip": "0.0.0.0"},
        "x",
        {},
        {"ip": UNKNOWN},
        {"ip": 127},
    ]
    assert containers.ports_bound_to_loopback(_c(ports=ports), PROD) == [
        _bind(3),
        _bind(5),
        Unchecked("c (Container): ports[6].ip"),
        _bind(7),
    ]
    opted = [{"label": "ms5.allow-non-loopback-bind", "value": "true"}]
    assert containers.ports_bound_to_loopback(_c(ports=ports, labels=opted), PROD) == [
        Unchecked("c (Container): ports[6].ip")
    ]
    not_opted = [{"label": "ms5.allow-non-loopback-bind", "value": "yes"}]
    assert containers.ports_bound_to_loopback(_c(ports=[{}], labels=not_opted), PROD) == [_bind(0)]


# ---- pgdata_on_named_volume, database_delete_before_replace -------------------------------------

NO_VOLUME = _v(
    "PGDATA has no volume (data lives in the container and is lost on replace); mount a named "
    "docker.Volume at the PGDATA path."
)


def _bad_volume(i: int) -> Violation:
    return _v(
        f"volumes[{i}] puts PGDATA on a bind mount or an anonymous volume, which is lost or "
        "shared on replace; mount a named docker.Volume there."
    )


def test_pgdata_on_named_volume():
    path = "/var/lib/postgresql/data"
    named = {"containerPath": path, "volumeName": "pgdata"}
    other = {"containerPath": "/backups", "volumeName": "b"}
    assert (
        containers.pgdata_on_named_volume(_c(envs=DB_ENVS, volumes=["x", other, named]), PROD) == []
    )
    assert containers.pgdata_on_named_volume(_c(envs=DB_ENVS, volumes=[other]), PROD) == [NO_VOLUME]
    assert containers.pgdata_on_named_volume(_c(envs=DB_ENVS), PROD) == [NO_VOLUME]
    bind = {"containerPath": path, "volumeName": "pgdata", "hostPath": "/srv/pg"}
    assert containers.pgdata_on_named_volume(_c(envs=DB_ENVS, volumes=[other, bind]), PROD) == [
        _bad_volume(1)
    ]
    anonymous = {"containerPath": path, "volumeName": ""}
    assert containers.pgdata_on_named_volume(_c(envs=DB_ENVS, volumes=[anonymous]), PROD) == [
        _bad_volume(0)
    ]
    assert containers.pgdata_on_named_volume(
        _c(envs=DB_ENVS, volumes=[{"containerPath": path}]), PROD
    ) == [_bad_volume(0)]
    unknown = {"containerPath": path, "volumeName": UNKNOWN}
    assert containers.pgdata_on_named_volume(_c(envs=DB_ENVS, volumes=[other, unknown]), PROD) == [
        Unchecked("c (Container): volumes[1].volumeName")
    ]
    custom = _c(envs=[*DB_ENVS, "PGDATA=/pg"], volumes=[named])
    assert containers.pgdata_on_named_volume(custom, PROD) == [NO_VOLUME]
    assert containers.pgdata_on_named_volume(_c(), PROD) == []


def test_database_delete_before_replace():
    message = [
        _v(
            "deleteBeforeReplace is not set; set ResourceOptions(delete_before_replace=True) so "
            "two servers never share PGDATA."
        )
    ]
    assert containers.database_delete_before_replace(_c(envs=DB_ENVS), PROD) == message
    assert containers.database_delete_before_replace(_c(command=["postgres"]), PROD) == message
    ok = _c(Options(delete_before_replace=True), envs=DB_ENVS)
    assert containers.database_delete_before_replace(ok, PROD) == []
    assert containers.database_delete_before_replace(_c(), PROD) == []


# ---- secrets_not_in_plain_sight -----------------------------------------------------------------


def _env(name: str) -> Violation:
    return _v(
        f"envs {name} carries a secret in the environment (docker inspect shows it); upload it "
        f"as a file and set {name}_FILE."
    )


def _url(name: str) -> Violation:
    return _v(
        f"envs {name} is a URL with a password in it; pass the password as an uploaded file instead."
    )


def _arg(key: str, i: int) -> Violation:
    return _v(
        f"{key}[{i}] passes a secret on the command line (visible in ps and docker inspect); "
        "read it from an uploaded file."
    )


def test_secrets_in_envs():
    envs = [
        "POSTGRES_PASSWORD=x",
        "POSTGRES_PASSWORD_FILE=/run/secrets/pw",
        "EMPTY_TOKEN=",
        "db_passwd=x",
        "GPG_PASSPHRASE=x",
        "MY_SECRET=x",
        "API_KEY=x",
        "APIKEY=x",
        "SMTP_PASS=x",
        "PASSAGE=x",
        "DSN=postgresql://user:pw@host/db",
        "PLAIN=postgresql://user@host/db",
        "HOSTPORT=http://host:80/x",
    ]
    assert containers.secrets_not_in_plain_sight(_c(envs=envs), PROD) == [
        _env("APIKEY"),
        _env("API_KEY"),
        _url("DSN"),
        _env("GPG_PASSPHRASE"),
        _env("MY_SECRET"),
        _env("POSTGRES_PASSWORD"),
        _env("SMTP_PASS"),
        _env("db_passwd"),
    ]
    assert containers.secrets_not_in_plain_sight(_c(envs=["A=1", UNKNOWN]), PROD) == [
        Unchecked("c (Container): envs")
    ]
    assert containers.secrets_not_in_plain_sight(_c(envs=["A=1"]), PROD) == []


def test_secrets_on_the_command_line():
    command = [
        "--password=x",
        "-db.secret-file=x",
        "--user=me",
        "--token",
        "postgres://u:p@h/db",
        "x--password=y",
        3,
    ]
    assert containers.secrets_not_in_plain_sight(
        _c(command=command, entrypoints=["sh", "--Auth.Token=1"]), PROD
    ) == [_arg("command", 0), _arg("command", 1), _arg("command", 4), _arg("entrypoints", 1)]


@pytest.mark.parametrize(
    "text",
    [
        "http://u:p@host/",
        "postgresql://u:p@h/db",
        "postgresql://u:p@[::1]:5432/db",
        "redis://:p@h:6379/0",
        "HTTP://U:P@H",
        "--db=postgresql://u:p@h/db",
        'sh -c "curl http://a:b@h/"',
        "http://u:p'w@h/",
        "a=http://h/x,b=http://u:p@h2/",
        "http://u:p@h:5432@other/",
        "http://u:p@[::1",
        "http://u:p@[::1/x",
        "http://u@h:x@[::1",
        "http://u:p:@[::1",
    ],
)
def test_a_password_in_the_authority_is_a_credential(text):
    assert containers.has_credential_url(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://host:80/x@y",
        "http://host/x:y@z",
        "http://u@h/x:y@z",
        "postgresql://user@host/db",
        "http://u:@h/",
        "http://h/?next=u:p@x",
        "http://h#u:p@x",
        "http://[::1]:80/a@b",
        "http://[::1/x@y",
        "http://[::1?u:p@x",
        "http://[::1#u:p@x",
        "http://u@[::1",
        "http://u:@[::1",
        "http://u@h@[::1",
        "user:pw@host",
        "http://h/ u:p@x",
        "",
    ],
)
def test_an_at_outside_the_authority_is_not_a_credential(text):
    assert not containers.has_credential_url(text)


def test_an_at_in_a_url_path_is_not_flagged_by_the_rule():
    container = _c(envs=["HOOK=http://host:80/x@y"], command=["--url=http://host:80/x@y"])
    assert containers.secrets_not_in_plain_sight(container, PROD) == []
    container = _c(envs=["HOOK=http://u:p@host/"], command=["--url=postgresql://u:p@h/db"])
    assert containers.secrets_not_in_plain_sight(container, PROD) == [
        _url("HOOK"),
        _arg("command", 0),
    ]


def test_secret_uploads_must_be_secret_outputs():
    files = [
        {"file": "/run/secrets/db"},
        {"file": "/etc/app/password.txt"},
        {"file": "/tls/server.key"},
        {"file": "/tls/server.pem"},
        {"file": "/tls/server.key.txt"},
        {"file": "/etc/app/config.yaml"},
        "x",
    ]
    assert containers.secrets_not_in_plain_sight(_c(uploads=files), PROD) == [
        _v(
            "uploads include secret files (/run/secrets/db, /etc/app/password.txt, "
            '/tls/server.key, /tls/server.pem) but additionalSecretOutputs lacks "uploads"; '
            "add it so state keeps them encrypted."
        )
    ]
    secret = Options(additional_secret_outputs=("uploads",))
    assert containers.secrets_not_in_plain_sight(_c(secret, uploads=files), PROD) == []
    other = Options(additional_secret_outputs=("envs",))
    assert len(containers.secrets_not_in_plain_sight(_c(other, uploads=files), PROD)) == 1
    assert containers.secrets_not_in_plain_sight(_c(uploads=[{"file": "/etc/a.conf"}]), PROD) == []


# ---- grafana_hardened ---------------------------------------------------------------------------

PW_FILE = "/run/secrets/grafana_admin"
OFF = ["GF_AUTH_ANONYMOUS_ENABLED=False", "GF_USERS_ALLOW_SIGN_UP=false"]


def _grafana(*envs: str, uploads: object = ()) -> Resource:
    return _c(envs=[*envs, *OFF], uploads=list(uploads))  # type: ignore[arg-type]


def test_a_hardened_grafana_passes():
    ok = _grafana(
        f"GF_SECURITY_ADMIN_PASSWORD__FILE={PW_FILE}",
        uploads=[{"file": "/x", "content": "admin"}, {"file": PW_FILE, "content": "s3cret"}],
    )
    assert containers.grafana_hardened(ok, PROD) == []
    assert containers.grafana_hardened(_grafana("GF_SECURITY_ADMIN_PASSWORD=s3cret"), PROD) == []
    assert containers.grafana_hardened(_c(envs=["A=1"]), PROD) == []


DEFAULT_INLINE = _v(
    "GF_SECURITY_ADMIN_PASSWORD is Grafana's default; set ms5:grafanaAdminPassword (or let the "
    "program generate one)."
)
DEFAULT_FILE = _v(
    "the uploaded admin password is Grafana's default; set ms5:grafanaAdminPassword to a "
    "generated secret."
)


@pytest.mark.parametrize(
    ("envs", "uploads", "finding"),
    [
        (["GF_SECURITY_ADMIN_PASSWORD=admin"], [], DEFAULT_INLINE),
        (["GF_SECURITY_ADMIN_PASSWORD="], [], DEFAULT_INLINE),
        (
            ["GF_SECURITY_ADMIN_PASSWORD__FILE="],
            [],
            _v(
                "no admin password is configured, so Grafana keeps admin/admin; set "
                "GF_SECURITY_ADMIN_PASSWORD__FILE to an uploaded secret file."
            ),
        ),
        (
            [f"GF_SECURITY_ADMIN_PASSWORD__FILE={PW_FILE}"],
            [{"file": "/other", "content": "x"}],
            _v(
                "GF_SECURITY_ADMIN_PASSWORD__FILE names a file that is not uploaded; upload the "
                "admin password there."
            ),
        ),
        (
            [f"GF_SECURITY_ADMIN_PASSWORD__FILE={PW_FILE}"],
            [{"file": PW_FILE, "content": UNKNOWN}],
            Unchecked("c (Container): the admin password file's content"),
        ),
        (
            [f"GF_SECURITY_ADMIN_PASSWORD__FILE={PW_FILE}"],
            [{"file": PW_FILE, "content": " admin\n"}],
            DEFAULT_FILE,
        ),
        (
            [f"GF_SECURITY_ADMIN_PASSWORD__FILE={PW_FILE}"],
            [{"file": PW_FILE, "content": ""}],
            DEFAULT_FILE,
        ),
    ],
)
def test_grafana_admin_password_findings(envs, uploads, finding):
    assert containers.grafana_hardened(_grafana(*envs, uploads=uploads), PROD) == [finding]


def test_grafana_anonymous_access_and_sign_up_must_be_off():
    resource = _c(
        envs=["GF_SECURITY_ADMIN_PASSWORD=s3cret", "GF_AUTH_ANONYMOUS_ENABLED=true", UNKNOWN]
    )
    assert containers.grafana_hardened(resource, PROD) == [
        Unchecked("c (Container): envs"),
        _v("anonymous access is not explicitly off; set GF_AUTH_ANONYMOUS_ENABLED=false."),
        _v("sign-up is not explicitly off; set GF_USERS_ALLOW_SIGN_UP=false."),
    ]


# ---- prometheus_hardened ------------------------------------------------------------------------

TSDB = "--storage.tsdb.path=/prometheus"
RETAINED = ["--storage.tsdb.retention.time=15d", "--storage.tsdb.retention.size=5GB"]


def test_prometheus_hardened():
    assert containers.prometheus_hardened(_c(command=[TSDB, *RETAINED]), PROD) == []
    assert containers.prometheus_hardened(_c(command=["--config.file=x"]), PROD) == []
    bad = _c(
        command=[
            TSDB,
            "--web.enable-admin-api",
            "--web.enable-lifecycle=true",
            "--storage.tsdb.retention.time=",
            "--storage.tsdb.retention.sizes",
        ]
    )
    assert containers.prometheus_hardened(bad, PROD) == [
        _v(
            "command enables the admin API (deletes series, snapshots the TSDB); remove "
            "--web.enable-admin-api."
        ),
        _v(
            "command enables the lifecycle API (remote shutdown and reload); remove "
            "--web.enable-lifecycle."
        ),
        _v("command lacks --storage.tsdb.retention.time=<value>; set ms5:prometheusRetention."),
        _v("command lacks --storage.tsdb.retention.size=<value>; set ms5:prometheusRetentionSize."),
    ]
    near = _c(command=[TSDB, *RETAINED, "--web.enable-admin-apis", "x--web.enable-lifecycle"])
    assert containers.prometheus_hardened(near, PROD) == []


def test_only_slashes_are_stripped_from_a_host_path():
    assert not containers._sensitive("/etcX")
    assert not containers._sensitive("X/etc")


def test_the_smallest_limits_are_limits():
    db = _c(envs=DB_ENVS, memory=1, cpus="1", shmSize=0.5)
    assert containers.resource_limits(db, PROD) == []
    assert containers.resource_limits(_c(memory=0.5, cpus="1"), PROD) == []
