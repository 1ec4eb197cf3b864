"""The deployment files agree with the image and with the service's settings.

deploy/check validates each file against its own schema; what no schema knows is checked
here: the paths, user, port and health command of deploy/Dockerfile are the ones compose and
Kubernetes give the container, every variable they set is one the service reads, and the
configurations they describe load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_recipe import BASE_IMAGE_ENV, ImageRecipe, read_recipe
from processes import REPO

from entrypoints.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    load_settings,
    parse_duration,
)

DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
SIDECAR_BUDGET = {"cpu": "500m", "memory": "256Mi"}  # SPEC section 1
# Variables the service reads besides the settings, and those the image sets for Python.
KNOWN_OTHERS = {"CONFIG_FILE", "RUNTIME_CONFIG_FILE"}
IMAGE_ONLY = {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
SETTING_VARIABLES = {name for setting in SETTINGS for name in setting.variables}
# What `kubectl create secret` provides (secret.example.yaml): long enough to load.
SECRET_VALUES = {"JWT_SECRET": "s" * 40, "BACKEND_TOKEN": "backend-service-token"}
# The variables the kubelet sets for a Service in the namespace (enableServiceLinks).
SERVICE_LINK = re.compile(
    r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$"
)


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return read_recipe()


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def manifest(name: str) -> dict[str, Any]:
    return load(BASE / name)


def settings_from(environ: dict[str, str], tmp_path: Path) -> Settings:
    return load_settings({"HOME": str(tmp_path), **environ}, cwd=tmp_path)


def seconds(value: object) -> float:
    return parse_duration(str(value))


def default_of(name: str) -> object:
    (setting,) = [setting for setting in SETTINGS if setting.name == name]
    return setting.default


def env_list(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def check_hardened_pod(pod: dict[str, Any], recipe: ImageRecipe) -> None:
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (recipe.uid, recipe.gid)
    assert security["fsGroup"] == recipe.gid
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def check_runtime_container(
    container: dict[str, Any], pod: dict[str, Any], recipe: ImageRecipe
) -> None:
    assert container["args"] == list(recipe.cmd)
    assert container["resources"] == {"requests": SIDECAR_BUDGET, "limits": SIDECAR_BUDGET}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The two writable places of the image, each an emptyDir.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounts) == {recipe.data_folder, "/tmp"}
    assert all("emptyDir" in volumes[name] for name in mounts.values())


# --- the image ------------------------------------------------------------------------------


def test_the_image_runs_serve_as_a_non_root_user_with_one_data_volume(
    recipe: ImageRecipe,
) -> None:
    assert recipe.entrypoint == ("cronium-runtime",)
    assert recipe.cmd == ("serve",)
    assert recipe.uid != 0
    assert recipe.gid != 0
    assert recipe.exposed_ports == (8081,)
    assert recipe.volumes == ("/var/lib/cronium-runtime",)


def test_every_path_the_image_configuration_writes_is_in_its_data_volume(
    recipe: ImageRecipe, tmp_path: Path
) -> None:
    settings = settings_from(recipe.env, tmp_path)

    volume = Path(recipe.data_folder)
    assert settings.store.path == volume
    assert settings.audit.file_path.is_relative_to(volume)
    assert settings.audit.spool_path.is_relative_to(volume)
    assert settings.metrics.multiprocess_dir is None  # serve makes its own, in /tmp
    assert settings.server.port in recipe.exposed_ports


def test_the_image_sets_only_variables_that_the_service_or_python_reads(
    recipe: ImageRecipe,
) -> None:
    set_here = set(recipe.env) - set(BASE_IMAGE_ENV)
    assert set_here - IMAGE_ONLY <= SETTING_VARIABLES


# --- compose --------------------------------------------------------------------------------


def test_compose_runs_the_image_read_only_with_its_data_volume_and_valkey(
    recipe: ImageRecipe, tmp_path: Path
) -> None:
    compose = load(DEPLOY / "compose.yaml")
    runtime, valkey = compose["services"]["runtime"], compose["services"]["valkey"]

    assert runtime["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / runtime["build"]["context"] / runtime["build"]["dockerfile"]).is_file()
    assert runtime["read_only"] is True
    assert runtime["tmpfs"] == ["/tmp"]
    volumes = dict(volume.split(":") for volume in runtime["volumes"])
    assert list(volumes.values()) == [recipe.data_folder]
    assert set(volumes) <= set(compose["volumes"])
    assert runtime["ports"] == [f"{port}:{port}" for port in recipe.exposed_ports]
    assert runtime["depends_on"] == {"valkey": {"condition": "service_healthy"}}

    assert valkey["image"] == "valkey/valkey:8"
    assert valkey["command"][valkey["command"].index("--appendonly") + 1] == "yes"
    assert "healthcheck" in valkey
    assert [volume.split(":")[1] for volume in valkey["volumes"]] == ["/data"]

    environment = dict(runtime["environment"])
    assert set(environment) <= SETTING_VARIABLES
    assert environment["JWT_SECRET"].startswith("${JWT_SECRET:?")
    environment["JWT_SECRET"] = SECRET_VALUES["JWT_SECRET"]
    settings = settings_from({**recipe.env, **environment}, tmp_path)
    assert settings.cache.url == "valkey://valkey:6379/0"
    # The stop waits for the drain, the in-flight requests and the audit flush (each of the
    # last two up to shutdownTimeout) before Docker kills.
    grace = seconds(runtime["stop_grace_period"])
    assert grace > settings.server.drain_delay + 2 * settings.server.shutdown_timeout


def test_compose_shows_the_backend_settings_commented_out() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")

    assert re.search(r"^\s+# BACKEND_URL: http", text, re.MULTILINE)
    assert re.search(r"^\s+# BACKEND_TOKEN: ", text, re.MULTILINE)


# --- Kubernetes -----------------------------------------------------------------------------


def test_the_base_kustomization_lists_every_manifest_of_the_base() -> None:
    listed = load(BASE / "kustomization.yaml")["resources"]
    present = sorted(path.name for path in BASE.glob("*.yaml") if path.name != "kustomization.yaml")

    assert sorted(listed) == present
    overlay = load(KUBERNETES / "valkey-cluster" / "kustomization.yaml")
    assert overlay["resources"] == ["../base"]
    for patch in overlay["patches"]:
        assert (KUBERNETES / "valkey-cluster" / patch["path"]).is_file()


def test_the_deployment_runs_the_image_hardened_within_the_sidecar_budget(
    recipe: ImageRecipe,
) -> None:
    deployment = manifest("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert "replicas" not in deployment["spec"]  # the HorizontalPodAutoscaler's
    check_hardened_pod(pod, recipe)
    check_runtime_container(container, pod, recipe)
    (port,) = container["ports"]
    assert port["containerPort"] in recipe.exposed_ports
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/health/ready",
        "port": port["name"],
    }
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert container["envFrom"] == [
        {"configMapRef": {"name": manifest("configmap.yaml")["metadata"]["name"]}},
        {"secretRef": {"name": load(KUBERNETES / "secret.example.yaml")["metadata"]["name"]}},
    ]


def test_the_grace_period_covers_the_pause_the_drain_and_the_shutdown() -> None:
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = manifest("configmap.yaml")["data"]

    sleep, pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    drain = seconds(config.get("DRAIN_DELAY", default_of("DRAIN_DELAY")))
    shutdown = seconds(config.get("SHUTDOWN_TIMEOUT", default_of("SHUTDOWN_TIMEOUT")))
    # In-flight requests, then the audit flush: each may take up to SHUTDOWN_TIMEOUT.
    assert pod["terminationGracePeriodSeconds"] > float(pause) + drain + 2 * shutdown


def test_the_reason_for_disabling_service_links_names_every_variable_they_could_set() -> None:
    colliding = sorted(name for name in SETTING_VARIABLES if SERVICE_LINK.match(name))
    text = (BASE / "deployment.yaml").read_text(encoding="utf-8")
    comment = text[: text.index("enableServiceLinks: false")]

    assert "RUNTIME_PORT" in colliding
    for name in colliding:
        assert name in comment, name


def test_the_service_the_autoscaler_the_budget_and_the_policy_select_the_deployment() -> None:
    deployment = manifest("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]

    service = manifest("service.yaml")
    assert service["metadata"]["name"] == "cronium-runtime"
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]

    autoscaler = manifest("hpa.yaml")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [metric["resource"]["name"] for metric in autoscaler["spec"]["metrics"]] == ["cpu"]
    assert autoscaler["spec"]["minReplicas"] >= 2

    budget = manifest("pdb.yaml")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()

    policy = manifest("networkpolicy.yaml")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (ingress,) = policy["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [port["containerPort"]]
    (source,) = ingress["from"]
    assert "podSelector" in source  # job pods only, by their label
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {6379, 5001, 53}


@pytest.mark.parametrize("overlay", [None, "valkey-cluster"])
def test_the_config_map_and_the_secret_load_as_a_pool_with_valkey_and_the_backend(
    overlay: str | None, recipe: ImageRecipe, tmp_path: Path
) -> None:
    data = dict(manifest("configmap.yaml")["data"])
    if overlay is not None:
        data.update(load(KUBERNETES / overlay / "configmap.yaml")["data"])
    secret = load(KUBERNETES / "secret.example.yaml")["stringData"]

    assert set(data) <= SETTING_VARIABLES
    assert set(secret) <= SETTING_VARIABLES
    assert set(secret) == set(SECRET_VALUES)
    settings = settings_from({**recipe.env, **data, **SECRET_VALUES}, tmp_path)
    assert settings.uses_valkey
    assert not settings.embedded_mode
    assert settings.cache.mode == ("cluster" if overlay else "standalone")


def test_the_secret_example_placeholders_stop_start_up(recipe: ImageRecipe, tmp_path: Path) -> None:
    data = manifest("configmap.yaml")["data"]
    secret = load(KUBERNETES / "secret.example.yaml")["stringData"]

    with pytest.raises(SettingsError, match="shorter than 32"):
        settings_from({**recipe.env, **data, **secret}, tmp_path)


def test_the_sidecar_job_gives_the_job_container_the_runtime_on_loopback(
    recipe: ImageRecipe, tmp_path: Path
) -> None:
    job = load(KUBERNETES / "sidecar-job.example.yaml")
    pod = job["spec"]["template"]["spec"]
    (runtime,) = pod["initContainers"]
    (script,) = pod["containers"]

    check_hardened_pod(pod, recipe)
    check_runtime_container(runtime, pod, recipe)
    assert runtime["restartPolicy"] == "Always"  # a native sidecar: stopped after the job
    runtime_env = env_list(runtime)
    assert set(runtime_env) <= SETTING_VARIABLES
    plain = {name: value for name, value in runtime_env.items() if isinstance(value, str)}
    settings = settings_from(
        {**recipe.env, **plain, **SECRET_VALUES, "BACKEND_URL": "http://backend:5001"}, tmp_path
    )
    assert settings.server.host == "127.0.0.1"
    # An HTTP probe would come from the node; the image's HEALTHCHECK runs inside.
    assert runtime["startupProbe"]["exec"]["command"] == list(recipe.healthcheck)
    assert runtime["livenessProbe"]["exec"]["command"] == list(recipe.healthcheck)
    assert pod["terminationGracePeriodSeconds"] > (
        settings.server.drain_delay + settings.server.shutdown_timeout
    )

    script_env = env_list(script)
    assert script_env["CRONIUM_RUNTIME_API"] == f"http://127.0.0.1:{settings.server.port}"
    assert script_env["CRONIUM_EXECUTION_ID"]
    assert script_env["CRONIUM_EXECUTION_TOKEN"]["secretKeyRef"]["key"] == "token"
