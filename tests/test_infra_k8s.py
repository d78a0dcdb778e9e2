"""Kubernetes manifests for EKS: schemas, kustomize renders, consistency with config/ and the
image, the scheduled retraining and lake maintenance, the two launcher scripts run for real, and
checkov.

Schema validation uses kubernetes-validate (strict: unknown fields fail) for the oldest and the
newest Kubernetes version EKS is expected to run the manifests on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.settings import load_config
from ml_model.train import parse_args as parse_train_args
from processor.lake_maintenance import build_parser as lake_maintenance_parser

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infrastructure" / "k8s"
BASE = K8S / "base"
OVERLAYS = ("dev", "prod")
EXECUTOR_TEMPLATE = BASE / "spark" / "executor-pod-template.yaml"
DRIVER_ENTRYPOINT = BASE / "spark" / "driver-entrypoint.sh"
SPARK_DEFAULTS = BASE / "spark" / "spark-defaults.conf"
DOCKERFILE = ROOT / "infrastructure" / "docker" / "Dockerfile"
KUBERNETES_VERSIONS = ("1.31.0", "1.34.0")
SECRET_NAME = "fraud-card-token"
# The pods that tokenise card numbers, and so the only ones given the tokenisation key.
TOKENISING_PODS = {"Job/fraud-processor", "executor-pod-template"}
RETRAIN = "fraud-retrain"
LAKE_MAINTENANCE = "fraud-lake-maintenance"
CRONJOBS = (RETRAIN, LAKE_MAINTENANCE)
# Every checkov finding that is skipped, with the reason, sits next to the resource as a
# `checkov.io/skipN` annotation; these are the only checks allowed to be skipped.
ALLOWED_CHECKOV_SKIPS = {
    "CKV_K8S_43": "images pinned by release tag per overlay, not by digest",
    "CKV_K8S_38": "the Spark driver needs its API token to create executor pods",
    "CKV_K8S_35": "the tokenisation key is read from an environment variable by the code",
    "CKV_K8S_8": "executors have no HTTP port for a liveness probe",
    "CKV_K8S_9": "executors have no HTTP port for a readiness probe",
    "CKV_K8S_21": "the executor template takes the driver's namespace from Spark",
}

Doc = dict[str, Any]


def _load_all(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _kubectl() -> str | None:
    return shutil.which("kubectl") or (
        "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None
    )


def cronjob_args(manifest: str) -> list[str]:
    """The one container's args of the CronJob in base/`manifest`, as written there."""
    (cron,) = [d for d in _load_all((BASE / manifest).read_text()) if d["kind"] == "CronJob"]
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def render_kustomization(path: Path) -> list[Doc]:
    """`kubectl kustomize path` as documents (also used by tests/test_infra_terraform.py)."""
    binary = _kubectl()
    if binary is None:
        pytest.skip("kubectl not installed: cannot render the kustomizations")
    result = subprocess.run(
        [binary, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return _load_all(result.stdout)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    """`kubectl kustomize` of the base and of each overlay."""
    return {
        name: render_kustomization(BASE if name == "base" else K8S / "overlays" / name)
        for name in ("base", *OVERLAYS)
    }


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _configmap(docs: list[Doc], name: str) -> dict[str, str]:
    """Data of a generated ConfigMap (kustomize appends a content hash to the name)."""
    matches = [
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(matches) == 1, f"ConfigMap {name}: {len(matches)} matches"
    data: dict[str, str] = matches[0]["data"]
    return data


def _pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            yield f"CronJob/{doc['metadata']['name']}", template
    yield "executor-pod-template", yaml.safe_load(EXECUTOR_TEMPLATE.read_text())


def _driver(docs: list[Doc]) -> Doc:
    job = _find(docs, "Job", "fraud-processor")
    container: Doc = job["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "driver"
    return container


def _spark_defaults() -> dict[str, str]:
    conf = {}
    for line in SPARK_DEFAULTS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            conf[key] = value.strip()
    return conf


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; an undefined reference fails the test (kubelet keeps it)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"$({name}) is not defined before it is used"
        return env[name]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, value)


def _driver_env(docs: list[Doc]) -> dict[str, str]:
    return _container_env(docs, _driver(docs))


def _container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom first, then env in order."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        generated = re.fullmatch(r"(.+)-[a-z0-9]{10}", name)
        env.update(_configmap(docs, generated[1] if generated else name))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _expand(item["value"], env)
        else:
            ref = item["valueFrom"]
            field = ref.get("fieldRef", {}).get("fieldPath")
            env[item["name"]] = f"<{field or 'secret'}>"
    return env


# --- schemas and renders ---------------------------------------------------------------------

MANIFEST_FILES = sorted(
    p for p in [*BASE.glob("*.yaml"), *BASE.glob("spark/*.yaml")] if p.name != "kustomization.yaml"
)


def test_manifest_files_found() -> None:
    names = {p.name for p in MANIFEST_FILES}
    assert {
        "namespace.yaml",
        "processor-job.yaml",
        "producer.yaml",
        "rbac.yaml",
        "retrain-cronjob.yaml",
        "lake-maintenance-cronjob.yaml",
    } <= names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.relative_to(BASE).as_posix())
def test_manifest_validates(path: Path, version: str) -> None:
    docs = _load_all(path.read_text())
    assert docs, f"{path} holds no resource"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ("base", *OVERLAYS))
def test_render_validates(rendered: dict[str, list[Doc]], name: str, version: str) -> None:
    kinds = {doc["kind"] for doc in rendered[name]}
    assert {
        "Namespace",
        "Job",
        "CronJob",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Role",
    } <= kinds
    for doc in rendered[name]:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "fraud"


# --- config/ and secrets -----------------------------------------------------------------------


def test_config_copy_matches_config_yaml() -> None:
    copy = BASE / "config" / "config.yaml"
    assert copy.read_bytes() == (ROOT / "config" / "config.yaml").read_bytes(), (
        "infrastructure/k8s/base/config/config.yaml differs from config/config.yaml: "
        "cp config/config.yaml infrastructure/k8s/base/config/config.yaml"
    )


@pytest.mark.parametrize("name", OVERLAYS)
def test_configmaps_give_a_valid_aws_profile(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    assert (
        _configmap(docs, "fraud-config")["config.yaml"]
        == (ROOT / "config" / "config.yaml").read_text()
    )
    env = _configmap(docs, "fraud-env")
    assert env["FRAUD_PROFILE"] == "aws"
    settings = load_config(env["FRAUD_PROFILE"], environ=env)
    assert settings.kinesis.stream_name == env["FRAUD_STREAM_NAME"]
    assert settings.dynamodb.alerts_table == env["FRAUD_ALERTS_TABLE"]
    assert settings.s3.bucket == env["FRAUD_BUCKET"]
    assert settings.processor.checkpoint_location == f"s3a://{env['FRAUD_BUCKET']}/checkpoints"
    assert settings.aws.endpoint_url is None


def test_secret_is_referenced_never_defined(rendered: dict[str, list[Doc]]) -> None:
    key_env = load_config("aws", environ={}).processor.tokenization_key_env
    for name, docs in rendered.items():
        assert not [d for d in docs if d["kind"] == "Secret"], f"{name} defines a Secret"
        for pod, template in _pod_specs(docs):
            for container in template["spec"]["containers"]:
                for item in container.get("env", []):
                    if item["name"] == key_env:
                        assert "value" not in item, f"{pod} has the key in clear"
                        assert item["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
    pods = {pod for pod, _ in _pod_specs(rendered["base"])}
    assert TOKENISING_PODS < pods
    for pod, template in _pod_specs(rendered["base"]):
        names = {e["name"] for c in template["spec"]["containers"] for e in c.get("env", [])}
        assert (key_env in names) == (pod in TOKENISING_PODS), pod


# --- pod security and resources ----------------------------------------------------------------


def test_pods_run_non_root_with_read_only_root(rendered: dict[str, list[Doc]]) -> None:
    uid = int(re.findall(r"^USER\s+(\d+)", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1])
    for pod, template in _pod_specs(rendered["base"]):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, pod
        assert spec["securityContext"]["runAsUser"] == uid, pod
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", pod
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, pod
            assert context["allowPrivilegeEscalation"] is False, pod
            assert context["capabilities"]["drop"] == ["ALL"], pod
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), pod
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in empty_dirs, f"{pod}: /tmp is not an emptyDir"


def test_only_the_driver_mounts_an_api_token(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    for account in (d for d in docs if d["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    for pod, template in _pod_specs(docs):
        assert template["spec"]["automountServiceAccountToken"] is (pod == "Job/fraud-processor")


def test_driver_rbac_is_least_privilege(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    roles = [d for d in docs if d["kind"] in {"Role", "ClusterRole"}]
    assert [r["kind"] for r in roles] == ["Role"]
    assert roles[0]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"],
        }
    ]
    binding = _find(docs, "RoleBinding", "fraud-processor-driver")
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    job_account = _find(docs, "Job", "fraud-processor")["spec"]["template"]["spec"][
        "serviceAccountName"
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": job_account, "namespace": "fraud"}
    ]
    # spark-defaults.conf switches off what would need more rights.
    conf = _spark_defaults()
    assert conf["spark.kubernetes.executor.disableConfigMap"] == "true"
    assert conf["spark.kubernetes.driver.ownPersistentVolumeClaim"] == "false"
    assert conf["spark.kubernetes.driver.reusePersistentVolumeClaim"] == "false"
    assert conf["spark.kubernetes.driver.service.deleteOnTermination"] == "false"


# --- producer ----------------------------------------------------------------------------------


def test_producer_serves_the_control_api_with_probes(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    deployment = _find(docs, "Deployment", "fraud-producer")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["producer.main", "serve"]
    assert args[args.index("--profile") + 1] == "aws"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert port == load_config("aws", environ={}).producer.api_port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert '@app.get("/health")' in (ROOT / "producer" / "api.py").read_text()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    service = _find(docs, "Service", "fraud-producer")
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] == "http"


# --- processor (Spark driver and executors) -------------------------------------------------------


def test_driver_metrics_port_is_scraped_and_probed(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    template = _find(docs, "Job", "fraud-processor")["spec"]["template"]
    port = load_config("aws", environ={}).processor.metrics_port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    driver = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in driver["ports"]}
    assert ports["metrics"] == port
    assert driver["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert ports["spark-ui"] == int(_spark_defaults()["spark.ui.port"])
    assert driver["livenessProbe"]["httpGet"]["port"] == "spark-ui"
    policy = _find(docs, "NetworkPolicy", "fraud-spark-driver")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    conf = _spark_defaults()
    assert allowed == {
        port,
        int(conf["spark.driver.port"]),
        int(conf["spark.driver.blockManager.port"]),
    }
    assert {ports["driver-rpc"], ports["blockmanager"]} == allowed - {port}


def test_pdb_covers_only_the_driver(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    selector = _find(docs, "PodDisruptionBudget", "fraud-processor-driver")["spec"]["selector"][
        "matchLabels"
    ]
    for pod, template in _pod_specs(docs):
        selected = selector.items() <= template["metadata"]["labels"].items()
        assert selected == (pod == "Job/fraud-processor"), pod


def test_job_restarts_the_driver_and_never_runs_two(rendered: dict[str, list[Doc]]) -> None:
    job = _find(rendered["base"], "Job", "fraud-processor")["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["podReplacementPolicy"] == "Failed"
    assert job.get("completions", 1) == 1 and job.get("parallelism", 1) == 1
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }


@pytest.mark.parametrize("name", ("base", *OVERLAYS))
def test_spark_submit_arguments(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    driver = _driver(docs)
    env = _driver_env(docs)
    args = shlex.split(env["PYSPARK_SUBMIT_ARGS"])
    assert args[-1] == "pyspark-shell"
    assert args[args.index("--master") + 1] == env["FRAUD_SPARK_MASTER"]
    assert env["FRAUD_SPARK_MASTER"].startswith("k8s://https://")
    assert args[args.index("--deploy-mode") + 1] == "client"
    conf = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--conf")
    assert conf["spark.driver.host"] == "<status.podIP>"
    assert conf["spark.kubernetes.driver.pod.name"] == "<metadata.name>"
    assert conf["spark.kubernetes.namespace"] == "<metadata.namespace>"
    # The executors run exactly the driver's image, also after an overlay changed it.
    assert conf["spark.kubernetes.container.image"] == driver["image"]
    assert int(conf["spark.executor.instances"]) >= 1
    # Static settings come from the mounted spark-defaults.conf.
    mounts = {m["name"]: m["mountPath"] for m in driver["volumeMounts"]}
    assert env["SPARK_CONF_DIR"] == mounts["spark"]
    spark_files = _configmap(docs, "fraud-spark")
    template_path = Path(_spark_defaults()["spark.kubernetes.executor.podTemplateFile"])
    assert template_path.parent == Path(mounts["spark"]) and template_path.name in spark_files
    assert driver["command"] == ["/bin/bash", f"{mounts['spark']}/driver-entrypoint.sh"]
    assert "driver-entrypoint.sh" in spark_files
    # The readiness probe and Prometheus reach /metrics on the pod IP, not loopback.
    assert driver["args"] == [
        "--profile",
        "aws",
        "--metrics-host",
        "0.0.0.0",
        "--log-format",
        "json",
    ]
    assert mounts["config"] == "/app/config/config.yaml"
    local_dir = _spark_defaults()["spark.local.dir"]
    assert local_dir in mounts.values()


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_sets_image_and_irsa_roles(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    image = _driver(docs)["image"]
    assert image.startswith("111122223333.dkr.ecr.")
    for pod, template in _pod_specs(docs):
        if pod != "executor-pod-template":  # the driver gives the executors its image
            assert {c["image"] for c in template["spec"]["containers"]} == {image}, pod
    roles = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    assert set(roles) == {
        "fraud-producer",
        "fraud-processor",
        "fraud-processor-executor",
        *CRONJOBS,
    }
    assert roles["fraud-processor"] == roles["fraud-processor-executor"] != roles["fraud-producer"]
    # Each CronJob has a role of its own.
    own = [roles[account] for account in ("fraud-producer", "fraud-processor", *CRONJOBS)]
    assert len(set(own)) == len(own)
    for arn in roles.values():
        assert re.fullmatch(
            rf"arn:aws:iam::\d{{12}}:role/fraud-{name}-(producer|processor|retrain|lake-maintenance)",
            arn,
        )


@pytest.mark.parametrize("name", ("base", *OVERLAYS))
def test_every_pod_runs_as_a_declared_service_account(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    """No pod falls back to `default`: each names an account of the manifests (and its role)."""
    docs = rendered[name]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    used = {pod: template["spec"].get("serviceAccountName") for pod, template in _pod_specs(docs)}
    for pod, account in used.items():
        assert account in accounts, f"{pod} runs as {account!r}, not a declared ServiceAccount"
    assert set(used.values()) == accounts, "a ServiceAccount no pod uses"


def test_executor_template_matches_the_driver(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["base"]
    template = yaml.safe_load(EXECUTOR_TEMPLATE.read_text())
    spec = template["spec"]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    bound = {s["name"] for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert spec["serviceAccountName"] in accounts - bound
    assert (
        spec["containers"][0]["name"]
        == _spark_defaults()["spark.kubernetes.executor.podTemplateContainerName"]
    )
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "spark-executor"
    # Spark takes volumes named spark-local-dir-* from the template as its local dirs.
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["spark-local-dir-1"] == _spark_defaults()["spark.local.dir"]
    policy = _find(docs, "NetworkPolicy", "fraud-spark-executor")
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [
        int(_spark_defaults()["spark.blockManager.port"])
    ]


# --- scheduled retraining and lake maintenance ------------------------------------------------


def _cronjob(docs: list[Doc], name: str) -> tuple[Doc, Doc, Doc]:
    """(CronJob spec, Job spec, its one container) of the CronJob `name`."""
    cron = _find(docs, "CronJob", name)["spec"]
    job = cron["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    return cron, job, container


def _option(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("name", OVERLAYS)
def test_retrain_trains_from_the_lake_into_models_next(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    """It runs ml_model.train on the profile's lake and writes the candidate, never the served
    model: models/next beside models/current, and no promotion anywhere in the command."""
    docs = rendered[name]
    _, _, container = _cronjob(docs, RETRAIN)
    command = [*container.get("command", []), *container["args"]]
    assert "command" not in container, "the image's entrypoint is `python -m`"
    assert container["args"][0] == "ml_model.train"
    assert not [arg for arg in command if "promote" in arg]
    # As the kubelet expands $(VAR) in args, with the pod's environment.
    env = _container_env(docs, container)
    args = [_expand(arg, env) for arg in container["args"][1:]]
    assert _option(args, "--profile") == env["FRAUD_PROFILE"] == "aws"
    settings = load_config("aws", environ=env)
    assert _option(args, "--history") == settings.processor.lake_path
    assert settings.processor.lake_path == f"s3a://{env['FRAUD_BUCKET']}/lake"
    output = _option(args, "--output")
    served = settings.model.path
    assert served == f"s3://{env['FRAUD_BUCKET']}/models/current"
    assert output == served.rsplit("/", 1)[0] + "/next" != served
    # The root file system is read-only: no HTML report (it would go to ./reports).
    assert "--no-report" in args
    # The options are the ones the training CLI takes (argparse exits 2 on an unknown one).
    parsed = parse_train_args(args)
    assert (parsed.history, parsed.output, parsed.no_report) == (
        settings.processor.lake_path,
        output,
        True,
    )


@pytest.mark.parametrize("name", OVERLAYS)
def test_lake_maintenance_compacts_and_vacuums_the_jobs_lake(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    """It runs processor.lake_maintenance on the lake the job writes (the profile's, as the
    job's --profile gives it), every closed day (no --before), and VACUUMs after it."""
    docs = rendered[name]
    _, _, container = _cronjob(docs, LAKE_MAINTENANCE)
    assert "command" not in container, "the image's entrypoint is `python -m`"
    assert container["args"][0] == "processor.lake_maintenance"
    env = _container_env(docs, container)
    args = [_expand(arg, env) for arg in container["args"][1:]]
    # The options are the ones the maintenance CLI takes (argparse exits 2 on an unknown one).
    parsed = lake_maintenance_parser().parse_args(args)
    assert parsed.profile == env["FRAUD_PROFILE"] == _option(_driver(docs)["args"], "--profile")
    assert parsed.lake_path is None, "the profile's processor.lake_path, as the job's"
    assert load_config("aws", environ=env).processor.lake_path.startswith(
        f"s3a://{env['FRAUD_BUCKET']}/"
    )
    assert parsed.before is None, "every day before today, UTC"
    assert parsed.vacuum is True
    # Its log lines are JSON like every other pod's.
    assert parsed.log_format == "json"


def test_lake_maintenance_runs_before_the_retraining(rendered: dict[str, list[Doc]]) -> None:
    """Daily, after midnight UTC and before the retraining reads the lake."""
    docs = rendered["base"]
    schedules = {}
    for name in CRONJOBS:
        minute, hour, *every_day = _cronjob(docs, name)[0]["schedule"].split()
        assert every_day == ["*", "*", "*"], name
        schedules[name] = (int(hour), int(minute))
    assert (0, 0) < schedules[LAKE_MAINTENANCE] < schedules[RETRAIN]


@pytest.mark.parametrize("cronjob", CRONJOBS)
@pytest.mark.parametrize("name", ("base", *OVERLAYS))
def test_cronjob_runs_one_bounded_job_at_a_time(
    rendered: dict[str, list[Doc]], name: str, cronjob: str
) -> None:
    cron, job, container = _cronjob(rendered[name], cronjob)
    assert len(cron["schedule"].split()) == 5 and cron["timeZone"] == "Etc/UTC"
    assert cron["concurrencyPolicy"] == "Forbid"
    assert 0 < cron["startingDeadlineSeconds"] <= 6 * 3600
    assert 0 < cron["successfulJobsHistoryLimit"] <= cron["failedJobsHistoryLimit"] <= 10
    # Both run: the maintenance compacts under each table's compaction lease, which the job
    # takes too (tests/test_compaction_lease.py).
    assert not cron.get("suspend", False)
    assert 0 < job["backoffLimit"] <= 5
    # A stuck run ends long before the next day's run is due.
    assert 0 < job["activeDeadlineSeconds"] <= 12 * 3600
    assert job.get("completions", 1) == 1 and job.get("parallelism", 1) == 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"] == {
        "containerName": container["name"],
        "operator": "In",
        "values": [2],
    }
    assert rules[1]["action"] == "Ignore"
    # One Python process each: guaranteed memory.
    resources = container["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    assert re.fullmatch(r"[2-9]Gi|1[0-6]Gi", resources["limits"]["memory"])


def test_retrain_gives_openmp_its_cpu_limit(rendered: dict[str, list[Doc]]) -> None:
    _, _, container = _cronjob(rendered["base"], RETRAIN)
    env = _container_env(rendered["base"], container)
    assert int(env["OMP_NUM_THREADS"]) == _cpus(container["resources"]["limits"]["cpu"])


def _selects(policy: Doc, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert "matchExpressions" not in selector, "only matchLabels selectors are checked here"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


@pytest.mark.parametrize("cronjob", CRONJOBS)
def test_cronjob_runs_as_its_own_account_and_reaches_s3(
    rendered: dict[str, list[Doc]], cronjob: str
) -> None:
    docs = rendered["base"]
    _, job, _ = _cronjob(docs, cronjob)
    spec = job["template"]["spec"]
    assert spec["serviceAccountName"] == cronjob
    account = _find(docs, "ServiceAccount", cronjob)
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.endswith("-" + cronjob.removeprefix("fraud-"))
    other_pods = [t for pod, t in _pod_specs(docs) if pod != f"CronJob/{cronjob}"]
    assert cronjob not in {t["spec"]["serviceAccountName"] for t in other_pods}
    # No Kubernetes API rights and no API token.
    bound = {s["name"] for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert cronjob not in bound
    assert spec["automountServiceAccountToken"] is False
    # Network: ingress denied (it serves nothing); egress, to S3, left open by every policy.
    labels = job["template"]["metadata"]["labels"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and _selects(d, labels)]
    assert [p["metadata"]["name"] for p in policies] == ["default-deny-ingress"]
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        assert "Egress" not in policy["spec"]["policyTypes"], policy["metadata"]["name"]


# --- the two launcher scripts, run with stand-ins for java and python ----------------------------


def _executor_script() -> list[str]:
    command: list[str] = yaml.safe_load(EXECUTOR_TEMPLATE.read_text())["spec"]["containers"][0][
        "command"
    ]
    assert command[:2] == ["/bin/bash", "-c"]
    return command


def _fake_binary(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def test_executor_command_starts_the_backend(tmp_path: Path) -> None:
    _fake_binary(tmp_path, "java", 'printf "%s\\n" "$@"')
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "SPARK_HOME": "/opt/spark-home",
        "SPARK_JAVA_OPT_0": "-Dspark.driver.port=7078",
        "SPARK_JAVA_OPT_1": "-Dspark.app.name=fraud processor",  # a space stays in one argument
        "SPARK_JAVA_OPT_2": "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "SPARK_EXECUTOR_MEMORY": "2048m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.0.1:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-abc",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "fraud-processor-exec-3",
    }
    # Kubernetes runs command + args; Spark's args are ["executor"].
    result = subprocess.run(
        [*_executor_script(), "executor"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "-Dspark.driver.port=7078",
        "-Dspark.app.name=fraud processor",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "-Xms2048m",
        "-Xmx2048m",
        "-cp",
        "/opt/spark-home/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url",
        "spark://CoarseGrainedScheduler@10.0.0.1:7078",
        "--executor-id",
        "3",
        "--cores",
        "2",
        "--app-id",
        "spark-abc",
        "--hostname",
        "10.0.0.9",
        "--resourceProfileId",
        "0",
        "--podName",
        "fraud-processor-exec-3",
    ]


def test_executor_command_rejects_other_arguments() -> None:
    result = subprocess.run(
        [*_executor_script(), "driver"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 64
    assert "expected Spark's argument 'executor'" in result.stderr


def _pyspark_jars() -> Path:
    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "jars"


@pytest.mark.integration
def test_executor_backend_accepts_the_launcher_options() -> None:
    """The options the template passes are the ones Spark's executor backend parses."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("java not installed")
    script = _executor_script()[2]
    main_class = re.search(r"org\.apache\.spark\.\S+", script)
    assert main_class is not None
    result = subprocess.run(
        [java, "-cp", f"{_pyspark_jars()}/*", main_class.group(0), "--not-an-option"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    usage = result.stdout + result.stderr
    assert "Usage:" in usage, usage
    for option in re.findall(r"^\s*(--[A-Za-z-]+) ", script, flags=re.MULTILINE):
        assert re.search(rf"^\s*{option} <", usage, flags=re.MULTILINE), f"{option} not accepted"


def _run_entrypoint(tmp_path: Path, python_body: str) -> subprocess.Popen[str]:
    _fake_binary(tmp_path, "python", python_body)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "MARK": str(tmp_path)}
    return subprocess.Popen(
        ["/bin/bash", str(DRIVER_ENTRYPOINT), "--profile", "aws"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("job_exit", "pod_exit"), [(0, 75), (1, 1), (2, 2)])
def test_driver_entrypoint_exit_codes(tmp_path: Path, job_exit: int, pod_exit: int) -> None:
    process = _run_entrypoint(tmp_path, f'echo "$@" > "$MARK/args"; exit {job_exit}')
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == pod_exit, stderr
    assert (tmp_path / "args").read_text().split() == ["-m", "processor.job", "--profile", "aws"]


def test_driver_entrypoint_forwards_sigterm(tmp_path: Path) -> None:
    body = """trap 'touch "$MARK/terminated"; exit 0' TERM
touch "$MARK/started"
while true; do sleep 0.1; done"""
    process = _run_entrypoint(tmp_path, body)
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert (tmp_path / "terminated").exists(), "SIGTERM did not reach the job"
    # A clean stop still fails the pod, so the Job starts a new driver.
    assert process.returncode == 75, stderr


# --- checkov -------------------------------------------------------------------------------


def _checkov() -> str | None:
    local = Path(sys.executable).parent / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


@pytest.fixture(scope="module")
def checkov_report(rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory) -> Doc:
    """One checkov run over what `kubectl apply -k` would apply, plus the executor template."""
    binary = _checkov()
    if binary is None:
        pytest.skip("checkov not installed")
    folder = tmp_path_factory.mktemp("checkov-k8s")
    for name in OVERLAYS:
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(rendered[name]))
    shutil.copy(EXECUTOR_TEMPLATE, folder / EXECUTOR_TEMPLATE.name)
    result = subprocess.run(
        [
            binary,
            "-d",
            str(folder),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report: Doc = json.loads(result.stdout)
    return report


@pytest.mark.integration
def test_checkov_passes(checkov_report: Doc) -> None:
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert not failed
    assert checkov_report["summary"]["passed"] > 100


@pytest.mark.integration
def test_checkov_skips_are_explained(checkov_report: Doc) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert check["check_id"] in ALLOWED_CHECKOV_SKIPS, check["check_id"]
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} skipped without a reason"


# --- checkov as a user runs it: `checkov -d infrastructure` from the repository root --------

CHECKOV_CONFIG = ROOT / "infrastructure" / ".checkov.yaml"


def _skip_paths() -> list[str]:
    paths: list[str] = yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-path"]
    return paths


def _kustomize_inputs() -> set[str]:
    """Resources and patches of every kustomization, relative to infrastructure/."""
    inputs = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        files = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]
        for name in files:
            path = (kustomization.parent / name).resolve()
            if path.is_file():
                inputs.add(path.relative_to(K8S.parent).as_posix())
    return inputs


def test_checkov_config_skips_only_kustomize_inputs() -> None:
    """The `kubernetes` framework skips files the `kustomize` framework checks rendered."""
    skipped = _skip_paths()
    assert skipped, "infrastructure/.checkov.yaml has no skip-path"
    inputs = _kustomize_inputs()
    assert set(skipped) <= inputs, set(skipped) - inputs
    patches = {p for p in inputs if p.startswith("k8s/overlays/")}
    assert patches <= set(skipped), "every overlay patch is a fragment, not a manifest"
    assert EXECUTOR_TEMPLATE.relative_to(K8S.parent).as_posix() not in inputs
    # checkov 3.2 joins the skip-path list into one broken regular expression (terraform
    # module_finder): a quantifier in any entry aborts the scan.
    for path in skipped:
        assert not set(path) & set("*+?{}()[]|^$"), path


@pytest.mark.slow
def test_checkov_over_infrastructure_as_a_user_runs_it() -> None:
    """`checkov -d infrastructure` from the root (infrastructure/.checkov.yaml) finds nothing."""
    binary = _checkov()
    if binary is None:
        pytest.skip("checkov not installed")
    if _kubectl() is None and shutil.which("kustomize") is None:
        pytest.skip("checkov's kustomize framework needs kubectl or kustomize")
    # --skip-download keeps the run offline; the checks are the same.
    result = subprocess.run(
        [binary, "-d", "infrastructure", "-o", "json", "--skip-download"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    parsed = json.loads(result.stdout)
    reports: list[Doc] = parsed if isinstance(parsed, list) else [parsed]
    by_framework = {r["check_type"]: r for r in reports}
    failed = [
        (r["check_type"], c["check_id"], c["file_path"])
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"terraform", "kubernetes", "kustomize", "dockerfile"} <= set(by_framework)
    # The overlays were checked rendered, and the executor template on its own.
    assert by_framework["kustomize"]["summary"]["passed"] > 100
    kubernetes_files = {
        c["file_path"]
        for kind in ("passed_checks", "skipped_checks")
        for c in by_framework["kubernetes"]["results"][kind]
    }
    assert kubernetes_files == {"/infrastructure/k8s/base/spark/executor-pod-template.yaml"}
