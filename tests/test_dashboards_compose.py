"""docker-compose.yml, the Dockerfile and the Grafana provisioning, checked without a container engine.

`docker-compose config` (Debian's docker-compose, installed by tests/run.sh) parses and
validates the compose file against its schema and resolves paths and variables; it needs
no Docker daemon. Then every file the stack mounts must exist in the repository.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import yaml

from dashboard_support import REPO

SERVICES = {"exporter", "prometheus", "alertmanager", "grafana"}


def compose_config() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (tests/run.sh installs Debian's docker-compose)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.invalid/services/T0/B0/test"
    r = subprocess.run([exe, "--project-directory", REPO, "-f", os.path.join(REPO, "docker-compose.yml"), "config"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


CONFIG = None


def config() -> dict:
    global CONFIG
    if CONFIG is None:
        CONFIG = compose_config()
    return CONFIG


def mounts(service: dict):
    """(source, target, is_bind) of each volume entry, in docker-compose config's resolved form."""
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            yield v["source"], v["target"], v["type"] == "bind"
        else:
            parts = v.split(":")
            yield parts[0], parts[1], parts[0].startswith("/")


def test_compose_file_is_valid_and_runs_the_four_services():
    cfg = config()
    assert set(cfg["services"]) == SERVICES
    exporter = cfg["services"]["exporter"]
    assert os.path.realpath(exporter["build"]["context"]) == os.path.realpath(REPO)
    assert "healthcheck" in exporter
    assert cfg["services"]["alertmanager"]["environment"]["SLACK_WEBHOOK_URL"].startswith("https://hooks.slack.invalid")


def test_every_mounted_file_exists_in_the_repository():
    for name, svc in config()["services"].items():
        for source, target, bind in mounts(svc):
            if bind:
                assert os.path.realpath(source).startswith(os.path.realpath(REPO) + os.sep), (name, source)
                assert os.path.exists(source), f"{name} mounts {source}, which is not in the repository"


def test_volumes_for_prometheus_data_and_exporter_state():
    cfg = config()
    named = set(cfg["volumes"])
    exporter = {t: s for s, t, bind in mounts(cfg["services"]["exporter"]) if not bind}
    prometheus = {t: s for s, t, bind in mounts(cfg["services"]["prometheus"]) if not bind}
    assert exporter["/var/lib/costmeter"] in named
    assert prometheus["/prometheus"] in named
    assert "--storage.path=/var/lib/costmeter" in cfg["services"]["exporter"]["command"]
    assert "--storage.tsdb.path=/prometheus" in cfg["services"]["prometheus"]["command"]


def _container_path(service: dict, path: str) -> str:
    """The repository file a container path comes from, through the service's bind mounts."""
    for source, target, bind in mounts(service):
        if bind and (path == target or path.startswith(target.rstrip("/") + "/")):
            return os.path.join(source, os.path.relpath(path, target))
    raise AssertionError(f"{path} is not mounted from the repository")


def test_each_service_reads_the_repository_files_it_is_pointed_at():
    cfg = config()
    prom = cfg["services"]["prometheus"]
    prom_cfg = _container_path(prom, re.search(r"--config.file=(\S+)", " ".join(prom["command"])).group(1))
    with open(prom_cfg, encoding="utf-8") as f:
        pc = yaml.safe_load(f)
    for rule_file in pc["rule_files"]:     # relative to the config file, inside the container too
        container = os.path.normpath(os.path.join(os.path.dirname(
            re.search(r"--config.file=(\S+)", " ".join(prom["command"])).group(1)), rule_file))
        assert os.path.isfile(_container_path(prom, container)), rule_file
    am = cfg["services"]["alertmanager"]
    am_cfg = re.search(r"--config.file=(\S+)", " ".join(am["command"])).group(1)
    assert os.path.isfile(_container_path(am, am_cfg))
    exporter = cfg["services"]["exporter"]
    ex_cfg = re.search(r"--config.file=(\S+)", " ".join(exporter["command"])).group(1)
    assert os.path.isfile(_container_path(exporter, ex_cfg))
    grafana = cfg["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert os.path.isfile(_container_path(grafana, home))
    with open(_container_path(grafana, "/etc/grafana/provisioning/dashboards/costmeter.yml"), encoding="utf-8") as f:
        provider = yaml.safe_load(f)["providers"][0]
    dash_dir = _container_path(grafana, provider["options"]["path"])
    assert sorted(n for n in os.listdir(dash_dir) if n.endswith(".json")) == \
        sorted(n for n in os.listdir(os.path.join(REPO, "dashboards")) if n.endswith(".json")) and \
        len(os.listdir(dash_dir)) >= 6
    with open(_container_path(grafana, "/etc/grafana/provisioning/datasources/costmeter.yml"), encoding="utf-8") as f:
        ds = yaml.safe_load(f)["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert ds["jsonData"]["timeInterval"] == pc["global"]["scrape_interval"]


def test_compose_prometheus_config_is_the_shipped_one_with_service_names():
    """config/prometheus.compose.yml differs from config/prometheus.yml only in its targets."""
    def load(name):
        with open(os.path.join(REPO, "config", name), encoding="utf-8") as f:
            c = yaml.safe_load(f)
        c["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = ["AM"]
        for sc in c["scrape_configs"]:
            sc["static_configs"][0]["targets"] = ["EXPORTER"]
        return c
    assert load("prometheus.compose.yml") == load("prometheus.yml")
    r = subprocess.run([shutil.which("promtool") or "promtool", "check", "config",
                        os.path.join(REPO, "config", "prometheus.compose.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_slim_pip_non_root_healthcheck():
    with open(os.path.join(REPO, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    lines = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip()
             and not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.\d+-slim", lines[0])
    assert any(re.match(r"RUN pip install \.( |$)", line) for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") and "/-/healthy" in line for line in lines)
    for line in lines:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert os.path.exists(os.path.join(REPO, src)), f"Dockerfile copies {src}, which does not exist"
