"""docker-compose.yml, the Dockerfile and its entry point agree, checked without a Docker engine.

The file runs three controllers on one PostgreSQL (issue 10); images cannot be pulled on the
build machines, so this checks the file, and tests/integration/test_ha.py runs the same
topology natively (three controller processes, one PostgreSQL server, emulated hosts).

The file is read as compose reads it: ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``
filled from an environment (``interpolate``), so the tests see what a deployment gets with
and without its ``.env``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOYED = {"POSTGRES_PASSWORD": "0f1e2d3c4b5a69788796a5b4"}  # what a .env holds
# The controllers of the cluster: service name -> (published API port, OpenFlow port).
CONTROLLERS = {"controller": (8080, 6653), "controller-2": (8081, 6654),
               "controller-3": (8082, 6655)}  # fmt: skip
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    """A ``${VAR:?error}`` whose variable is unset or empty."""


def interpolate(data: Any, env: dict[str, str]) -> Any:
    """``data`` with every ``${...}`` in its strings filled from ``env``, as compose does."""
    if isinstance(data, dict):
        return {key: interpolate(value, env) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(value, env) for value in data]
    if not isinstance(data, str):
        return data

    def one(m: re.Match[str]) -> str:
        value, op, arg = env.get(m["name"]), m["op"] or "", m["arg"] or ""
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and missing:
            raise MissingVariable(f"{m['name']}: {arg}")
        if op.endswith("-") and missing:
            return arg
        return value or ""

    return _VAR.sub(one, data)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as deployed with a ``.env`` that sets the database password."""
    data = interpolate(raw, DEPLOYED)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(compose.get("services"), dict), "no services"
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either the mapping or the KEY=VALUE list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _build(service: dict[str, Any]) -> tuple[Path, Path]:
    """(context directory, Dockerfile path) of a service that builds its image."""
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile's final stage, continuations joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]
    froms = [i for i, (instr, _) in enumerate(pairs) if instr == "FROM"]
    assert froms, f"{dockerfile} has no FROM"
    return pairs[froms[-1] :]


def _argv(arguments: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT, from the exec (JSON) or the shell form."""
    if arguments.startswith("["):
        return list(json.loads(arguments))
    return ["/bin/sh", "-c", arguments]


def _healthcheck_ok(service: dict[str, Any]) -> None:
    check = service.get("healthcheck")
    assert check and not check.get("disable"), "healthcheck missing or disabled"
    test = check["test"]
    assert test and test not in (["NONE"], "NONE")
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test


def test_services_present(services: dict[str, Any]) -> None:
    assert {"db", *CONTROLLERS} <= services.keys()
    running = {n for n, s in services.items() if "profiles" not in s}
    assert {n for n in running if n.startswith("controller")} == CONTROLLERS.keys()


def test_db_is_postgres_with_a_volume_and_pg_isready(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    db = services["db"]
    assert db["image"].startswith("postgres:15")
    env = _env(db)
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= env.keys()
    _healthcheck_ok(db)
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volumes = [str(v).split(":")[0] for v in db.get("volumes", [])]
    data_volumes = [v for v in volumes if v in (compose.get("volumes") or {})]
    assert data_volumes, "db data must live on a named volume"


def test_controller_builds_from_an_existing_dockerfile(services: dict[str, Any]) -> None:
    for name in CONTROLLERS:
        context, dockerfile = _build(services[name])
        assert context.is_dir()
        assert dockerfile.is_file(), f"{dockerfile} does not exist"
        assert services[name]["image"] == services["controller"]["image"], name


def test_controller_waits_for_a_healthy_db(services: dict[str, Any]) -> None:
    for name in CONTROLLERS:
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), "depends_on needs the long form to carry a condition"
        assert depends["db"]["condition"] == "service_healthy", name


def test_only_the_first_controller_migrates_the_others_wait_for_it(
    services: dict[str, Any],
) -> None:
    """The entry point runs `vxplane db upgrade`, which takes no lock: two at once on an empty
    database would race. The other members start once the first is healthy (migrated)."""
    assert "controller" not in services["controller"]["depends_on"]
    for name in CONTROLLERS.keys() - {"controller"}:
        assert services[name]["depends_on"]["controller"]["condition"] == "service_healthy"


def test_each_controller_advertises_its_own_published_addresses(
    raw: dict[str, Any], services: dict[str, Any]
) -> None:
    """--advertise-api/--advertise-openflow name the published ports (a 0.0.0.0 listener
    advertises nothing), distinct per member; VXPLANE_PUBLISH_ADDR moves them all."""
    elsewhere = interpolate(raw, {**DEPLOYED, "VXPLANE_PUBLISH_ADDR": "198.51.100.4"})
    for addr, where in (("127.0.0.1", services), ("198.51.100.4", elsewhere["services"])):
        seen = set()
        for name, (api, of) in CONTROLLERS.items():
            env = _env(where[name])
            assert env["VXPLANE_ADVERTISE_API"] == f"http://{addr}:{api}", name
            assert env["VXPLANE_ADVERTISE_OPENFLOW"] == f"tcp:{addr}:{of}", name
            assert _published(where[name]) == {"8080": addr, "6653": addr}
            assert _host_ports(where[name]) == {"8080": str(api), "6653": str(of)}, name
            allowed = json.loads(env["VXPLANE_ALLOWED_HOSTS"])
            assert addr in allowed and name in allowed, (name, allowed)
            seen.add((env["VXPLANE_ADVERTISE_API"], env["VXPLANE_ADVERTISE_OPENFLOW"]))
        assert len(seen) == len(CONTROLLERS)


def test_each_controller_keeps_its_admin_token_on_a_volume_of_its_own(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    volumes = {}
    for name in CONTROLLERS:
        mounts = [str(v) for v in services[name]["volumes"]]
        (mount,) = [v for v in mounts if v.split(":")[1] == "/var/lib/vxplane"]
        volumes[name] = str(mount).split(":")[0]
        assert volumes[name] in (compose.get("volumes") or {}), name
    assert len(set(volumes.values())) == len(CONTROLLERS)


def test_controller_healthcheck_gets_healthz_without_curl(services: dict[str, Any]) -> None:
    controller = services["controller"]
    _healthcheck_ok(controller)
    test = controller["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else test
    assert "curl" not in command and "wget" not in command, "python:*-slim has neither"
    assert "python" in command
    assert "http://127.0.0.1:8080/healthz" in command


def test_controller_db_url_points_at_the_db_service(services: dict[str, Any]) -> None:
    for name in CONTROLLERS:  # one shared database: the cluster's only shared engine
        env = _env(services[name])
        url = urlsplit(env["VXPLANE_DB_URL"])
        assert url.scheme == "postgresql+psycopg"
        assert url.hostname == "db"
        assert (url.port or 5432) == 5432
        db_env = _env(services["db"])
        assert url.username == db_env["POSTGRES_USER"]
        assert url.password == db_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == db_env["POSTGRES_DB"]


def _published(service: dict[str, Any]) -> dict[str, str]:
    """Container port -> the host address it is published on ("" for every address)."""
    out = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out[str(port["target"])] = str(port.get("host_ip", ""))
        else:
            parts = str(port).split("/")[0].rsplit(":", 2)
            out[parts[-1]] = parts[0] if len(parts) == 3 else ""
    return out


def _host_ports(service: dict[str, Any]) -> dict[str, str]:
    """Container port -> the host port it is published on."""
    out = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out[str(port["target"])] = str(port["published"])
        else:
            parts = str(port).split("/")[0].rsplit(":", 2)
            out[parts[-1]] = parts[-2] if len(parts) > 1 else parts[-1]
    return out


def test_controller_publishes_api_and_openflow_on_loopback_unless_configured(
    raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    for name in CONTROLLERS:
        controller = compose["services"][name]
        assert _published(controller) == {"8080": "127.0.0.1", "6653": "127.0.0.1"}, name
        assert controller.get("restart") == "unless-stopped"
        elsewhere = interpolate(raw, {**DEPLOYED, "VXPLANE_PUBLISH_ADDR": "198.51.100.4"})
        assert _published(elsewhere["services"][name]) == {
            "8080": "198.51.100.4", "6653": "198.51.100.4"
        }  # fmt: skip
    for name, service in compose["services"].items():  # nothing on every interface
        assert "" not in _published(service).values(), name


def test_database_password_has_no_default_and_a_clear_error(raw: dict[str, Any]) -> None:
    with pytest.raises(MissingVariable, match=r"POSTGRES_PASSWORD: set POSTGRES_PASSWORD in \.env"):
        interpolate(raw, {})
    with pytest.raises(MissingVariable):
        interpolate(raw, {"POSTGRES_PASSWORD": ""})
    deployed = interpolate(raw, DEPLOYED)["services"]
    password = DEPLOYED["POSTGRES_PASSWORD"]
    assert _env(deployed["db"])["POSTGRES_PASSWORD"] == password
    for name in CONTROLLERS:
        assert urlsplit(_env(deployed[name])["VXPLANE_DB_URL"]).password == password
    assert "vxplane:vxplane@" not in COMPOSE_FILE.read_text()


def test_dockerfile_image_runs_as_non_root_and_exposes_ports(services: dict[str, Any]) -> None:
    _, dockerfile = _build(services["controller"])
    final = _instructions(dockerfile)
    assert final[0][1].split()[0] == "python:3.11-slim-bookworm"
    users = [args for instr, args in final if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    exposed = {p.split("/")[0] for instr, args in final if instr == "EXPOSE" for p in args.split()}
    assert {"8080", "6653"} <= exposed


def _entrypoint_and_cmd(dockerfile: Path) -> tuple[list[str], list[str]]:
    final = _instructions(dockerfile)
    entrypoints = [_argv(args) for instr, args in final if instr == "ENTRYPOINT"]
    cmds = [_argv(args) for instr, args in final if instr == "CMD"]
    return (entrypoints[-1] if entrypoints else []), (cmds[-1] if cmds else [])


def _entrypoint_script(dockerfile: Path) -> Path | None:
    """The repository file the image's ENTRYPOINT runs, found through the Dockerfile's COPY."""
    entrypoint, _ = _entrypoint_and_cmd(dockerfile)
    if not entrypoint:
        return None
    name = Path(entrypoint[0]).name
    for instr, args in _instructions(dockerfile):
        if instr != "COPY":
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources, dest = words[:-1], words[-1]
        for source in sources:
            if name in (Path(source).name, Path(dest).name):
                path = dockerfile.parent / source
                if path.is_file():
                    return path
    return None


def _normalise(script: str) -> str:
    """Shell text with comments dropped and line continuations joined."""
    script = re.sub(r"\\\n\s*", " ", script)
    return "\n".join(line.split("#", 1)[0] for line in script.splitlines())


def test_image_runs_vxplane_controller(services: dict[str, Any]) -> None:
    _, dockerfile = _build(services["controller"])
    entrypoint, cmd = _entrypoint_and_cmd(dockerfile)
    argv = " ".join(entrypoint + cmd)
    script = _entrypoint_script(dockerfile)
    text = argv + "\n" + (_normalise(script.read_text()) if script else "")
    assert re.search(r"\bvxplane controller\b", text), "the image must run `vxplane controller`"
    for option in ("--db", "--api", "--openflow"):
        assert re.search(rf"vxplane controller\b.*{option}\b", text), option
    assert "0.0.0.0:8080" in text and "0.0.0.0:6653" in text, "listen on all addresses"


def test_entrypoint_applies_migrations_before_starting(services: dict[str, Any]) -> None:
    _, dockerfile = _build(services["controller"])
    script = _entrypoint_script(dockerfile)
    assert script is not None, "ENTRYPOINT must be a script COPY'd from the repository"
    text = _normalise(script.read_text())
    assert script.stat().st_mode & 0o111 or "--chmod=" in dockerfile.read_text()
    upgrade = re.search(r"vxplane db upgrade --db \"?\$\{?VXPLANE_DB_URL", text)
    start = re.search(r"exec vxplane controller --db \"?\$\{?VXPLANE_DB_URL", text)
    assert upgrade, "the entry point must run `vxplane db upgrade --db $VXPLANE_DB_URL`"
    assert start, "the entry point must exec `vxplane controller --db $VXPLANE_DB_URL`"
    assert upgrade.start() < start.start()
    assert re.search(r"^\s*set -[a-z]*e", text, re.M), "a failed migration must stop the start"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) if present, else Debian's `docker-compose` (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        if os.environ.get("CI"):
            pytest.fail("CI must validate the compose file: install docker-compose (install-deps)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    empty = tmp_path / "empty.env"  # not the checkout's own .env, if a developer has one
    empty.write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTGRES_PASSWORD", "VXPLANE_PUBLISH_ADDR")
    }

    def config(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, "-f", str(COMPOSE_FILE), "--env-file", str(empty), *args, "config"],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env={**env, **extra},
        )  # fmt: skip

    result = config(DEPLOYED)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    for name, (api, of) in CONTROLLERS.items():  # anchors and merge keys resolved by compose
        assert _published(resolved[name]) == {"8080": "127.0.0.1", "6653": "127.0.0.1"}
        assert _host_ports(resolved[name]) == {"8080": str(api), "6653": str(of)}
        env = _env(resolved[name])
        assert env["VXPLANE_ADVERTISE_API"] == f"http://127.0.0.1:{api}"
        assert urlsplit(env["VXPLANE_DB_URL"]).hostname == "db"
    for name in ("prometheus", "grafana"):  # v2 leaves them out, v1 lists them with profiles
        assert resolved.get(name, {"profiles": ["monitoring"]})["profiles"] == ["monitoring"]
    refused = config({})
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in .env" in refused.stderr
    monitoring = config(DEPLOYED, "--profile", "monitoring")
    assert monitoring.returncode == 0, monitoring.stderr
    assert {"prometheus", "grafana"} <= yaml.safe_load(monitoring.stdout)["services"].keys()


# -- the optional monitoring profile: Prometheus and Grafana ------------------------------

MONITORING = ROOT / "docker" / "monitoring"


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert isinstance(data, dict)
    return data


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repository path of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def test_monitoring_is_an_optional_profile_with_pinned_images(services: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service.get("profiles") == ["monitoring"], f"{name} must be opt-in"
        image = service["image"]
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", image), f"{name}: pin a version: {image}"
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name} mounts {source} at {target}: not in the repository"
    for name in ("db", *CONTROLLERS):
        assert "profiles" not in services[name], f"{name} must start without a profile"


def test_monitoring_publishes_only_grafana_on_loopback(services: dict[str, Any]) -> None:
    assert _published(services["prometheus"]) == {}, "Prometheus has no login: not published"
    assert _published(services["grafana"]) == {"3000": "127.0.0.1"}
    env = _env(services["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "no password in the compose file"
    secret = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert secret == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in services["grafana"]["secrets"]


def test_prometheus_scrapes_with_a_bearer_token_file(
    compose: dict[str, Any], services: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    prometheus = services["prometheus"]
    mounted = _mounts(prometheus)
    assert mounted["/etc/prometheus/prometheus.yml"] == ROOT / "docker/monitoring/prometheus.yml"
    secrets = set(prometheus["secrets"])
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert {"vxplane-controller", "vxplane-agent"} <= jobs.keys()
    for name, job in jobs.items():
        auth = job["authorization"]
        assert auth.get("type", "Bearer") == "Bearer" and "credentials" not in auth, name
        path = auth["credentials_file"]
        assert path.startswith("/run/secrets/") and path.rsplit("/", 1)[1] in secrets, name
        assert job.get("metrics_path", "/metrics") == "/metrics"
    for secret in secrets:  # the token lives in a file kept out of git
        source = Path(compose["secrets"][secret]["file"])
        ignored = (ROOT / ".gitignore").read_text().splitlines()
        assert str(source).removeprefix("./") in ignored, source
    # every controller is scraped, and answers the Host header Prometheus sends (the DNS
    # rebinding guard)
    targets = jobs["vxplane-controller"]["static_configs"][0]["targets"]
    assert {t.rsplit(":", 1)[0] for t in targets} == CONTROLLERS.keys()
    for target in targets:
        host, port = target.rsplit(":", 1)
        allowed = json.loads(_env(services[host])["VXPLANE_ALLOWED_HOSTS"])
        assert host in allowed and port == "8080", target
    assert set(services["prometheus"]["depends_on"]) == CONTROLLERS.keys()
    # agents come from files Prometheus rereads, in the mounted targets directory
    (files,) = jobs["vxplane-agent"]["file_sd_configs"][0]["files"]
    assert files.startswith("/etc/prometheus/targets/") and "/etc/prometheus/targets" in mounted


def test_grafana_provisions_the_datasource_and_the_dashboard(services: dict[str, Any]) -> None:
    mounted = _mounts(services["grafana"])
    provisioning = mounted["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/vxplane.yml").read_text())["providers"]
    folder = mounted[provider["options"]["path"]]
    dashboard = json.loads((folder / "vxplane.json").read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {source["uid"]}, "every panel must query the provisioned Prometheus"
