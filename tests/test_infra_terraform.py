"""Terraform for AWS, checked without the terraform binary: parsed with python-hcl2, every
reference resolves, IAM grants only what the code calls, names come from variables and agree
with config/ and the Kubernetes overlays (every ServiceAccount there maps to a role whose trust
policy names it), and checkov passes. `terraform fmt -check` runs when the binary is installed.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

import ml_model.history
import ml_model.train
import processor.compaction_lease
import processor.lake_commit
import processor.lake_maintenance
from config.settings import load_config
from ml_model.artifacts import CARD_FILE, MODEL_FILE, write_artifacts
from processor.compaction_lease import LEASE_NAME
from tests.test_infra_k8s import cronjob_args, render_kustomization

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "infrastructure" / "terraform"
K8S_BASE = ROOT / "infrastructure" / "k8s" / "base"
OVERLAYS = ROOT / "infrastructure" / "k8s" / "overlays"
ENVIRONMENTS = ("dev", "prod")

PRODUCER_ALLOWED = {
    "kinesis:PutRecord",
    "kinesis:PutRecords",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kms:GenerateDataKey",
}
PROCESSOR_ALLOWED = {
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "dynamodb:BatchGetItem",  # a replay keeps the analysts' verdicts
    "dynamodb:BatchWriteItem",
    "dynamodb:PutItem",
    "s3:ListBucket",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "sagemaker:InvokeEndpoint",
}
# ml_model.train from the lake into models/next: list and read the lake, put two objects.
RETRAIN_ALLOWED = {
    "s3:ListBucket",
    "s3:GetObject",
    "s3:PutObject",
    "kms:Decrypt",
    "kms:GenerateDataKey",
}
# processor.lake_maintenance with delta-rs: the actions training needs (list, get, put), plus
# deleting what VACUUM finds expired and cleaning up the multipart uploads of big files.
LAKE_MAINTENANCE_ALLOWED = RETRAIN_ALLOWED | {
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
# boto3 calls in the code and the IAM action each one needs.
BOTO3_ACTIONS = {
    "put_record": "kinesis:PutRecord",
    "put_records": "kinesis:PutRecords",
    "describe_stream": "kinesis:DescribeStream",
    "describe_stream_summary": "kinesis:DescribeStreamSummary",
    "list_shards": "kinesis:ListShards",
    "get_records": "kinesis:GetRecords",
    "get_shard_iterator": "kinesis:GetShardIterator",
    "subscribe_to_shard": "kinesis:SubscribeToShard",
    "put_item": "dynamodb:PutItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "update_item": "dynamodb:UpdateItem",
    "batch_get_item": "dynamodb:BatchGetItem",
    "delete_item": "dynamodb:DeleteItem",
    "transact_write_items": "dynamodb:PutItem",
    "get_object": "s3:GetObject",
    "download_file": "s3:GetObject",
    "put_object": "s3:PutObject",
    "upload_file": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "invoke_endpoint": "sagemaker:InvokeEndpoint",
}
ALLOWED_CHECKOV_SKIPS = {
    "CKV_AWS_109",  # KMS key policy: "*" is the key itself
    "CKV_AWS_111",
    "CKV_AWS_356",
    "CKV_AWS_144",  # cross-region replication: a per-deployment DR decision
    "CKV2_AWS_62",  # S3 event notifications: no consumer
    "CKV_AWS_18",  # access logging: optional aws_s3_bucket_logging
    "CKV2_AWS_57",  # automatic rotation of the tokenisation key would change every token
}

Body = dict[str, Any]


# --- reading HCL with either python-hcl2 output style -------------------------------------------


@cache
def _style() -> tuple[bool, bool]:
    """(attributes wrapped in one-element lists, strings keep their quotes), by probing."""
    probe = hcl2.loads('x = "a"\n')
    value = probe["x"]
    wrapped = isinstance(value, list)
    text = value[0] if wrapped else value
    return wrapped, text == '"a"'


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        quoted = _style()[1] and len(value) >= 2 and value[0] == value[-1] == '"'
        return value[1:-1] if quoted else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def attr(body: Body, name: str, default: Any = None) -> Any:
    """An attribute's value."""
    if name not in body:
        return default
    value = body[name]
    if _style()[0] and isinstance(value, list) and len(value) == 1:
        value = value[0]
    return _clean(value)


def blocks(body: Body, name: str) -> list[Body]:
    """The nested blocks called `name` (a dynamic block's content included)."""
    found: list[Body] = list(body.get(name, []))
    for dynamic in body.get("dynamic", []):
        if name in dynamic:
            found.extend(dynamic[name]["content"])
    return found


def _load(path: Path) -> Body:
    with path.open() as handle:
        parsed: Body = hcl2.load(handle)
    return parsed


@pytest.fixture(scope="module")
def tf() -> dict[str, dict[str, Body]]:
    """All .tf files: {"resource": {"type.name": body}, "data": {...}, "variable": {...}, ...}."""
    merged: dict[str, dict[str, Body]] = {
        kind: {} for kind in ("resource", "data", "variable", "output", "locals", "provider")
    }
    for path in sorted(TF.glob("*.tf")):
        parsed = _load(path)
        for kind in ("resource", "data"):
            for group in parsed.get(kind, []):
                for rtype, named in group.items():
                    for name, body in named.items():
                        key = f"{rtype}.{name}"
                        assert key not in merged[kind], f"{kind} {key} declared twice"
                        merged[kind][key] = body
        for kind in ("variable", "output", "provider"):
            for group in parsed.get(kind, []):
                merged[kind].update(group)
        for group in parsed.get("locals", []):
            merged["locals"].update({k: v for k, v in group.items() if not k.startswith("__")})
    return merged


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("__"):
                yield from _strings(item)


def _tfvars(env: str) -> Body:
    return {
        k: attr(_load(TF / "environments" / f"{env}.tfvars"), k)
        for k in _load(TF / "environments" / f"{env}.tfvars")
    }


def _statements(tf: dict[str, dict[str, Body]], document: str) -> list[Body]:
    return blocks(tf["data"][f"aws_iam_policy_document.{document}"], "statement")


def _actions(statements: list[Body]) -> set[str]:
    return {action for s in statements for action in attr(s, "actions")}


def _locals(tf: dict[str, dict[str, Body]], name: str) -> str:
    return "".join(_strings(tf["locals"][name]))


# --- structure ------------------------------------------------------------------------------------


def test_files_parse(tf: dict[str, dict[str, Body]]) -> None:
    assert {
        "aws_kinesis_stream.transactions",
        "aws_dynamodb_table.alerts",
        "aws_s3_bucket.lake",
    } <= set(tf["resource"])
    for env in ENVIRONMENTS:
        assert _tfvars(env)["name_prefix"] == f"fraud-{env}"


def test_every_reference_resolves(tf: dict[str, dict[str, Body]]) -> None:
    declared = (
        set(tf["resource"])
        | {f"data.{key}" for key in tf["data"]}
        | {f"var.{name}" for name in tf["variable"]}
        | {f"local.{name}" for name in tf["locals"]}
    )
    pattern = re.compile(
        r"(?<![\w.])(data\.[a-z0-9_]+\.[a-z0-9_]+|var\.[a-z0-9_]+|local\.[a-z0-9_]+"
        r"|aws_[a-z0-9_]+\.[a-z0-9_]+)"
    )
    used: set[str] = set()
    for kind in ("resource", "data", "output", "locals", "provider"):
        for text in _strings(tf[kind]):
            used.update(pattern.findall(text))
    assert used - declared == set(), "references to undeclared names"
    unused_variables = {v for v in declared if v.startswith("var.")} - used
    assert unused_variables == set()
    unused_locals = {v for v in declared if v.startswith("local.")} - used
    assert unused_locals == set()


def test_tfvars_name_only_declared_variables(tf: dict[str, dict[str, Body]]) -> None:
    required = {name for name, body in tf["variable"].items() if "default" not in body}
    for env in ENVIRONMENTS:
        values = _tfvars(env)
        assert set(values) <= set(tf["variable"])
        assert required <= set(values), f"{env}.tfvars misses {required - set(values)}"


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ("aws_kinesis_stream.transactions", "name"),
        ("aws_dynamodb_table.alerts", "name"),
        ("aws_s3_bucket.lake", "bucket"),
        ("aws_iam_role.producer", "name"),
        ("aws_iam_role.processor", "name"),
        ("aws_iam_role.retrain", "name"),
        ("aws_iam_role.lake_maintenance", "name"),
        ("aws_kms_alias.stream", "name"),
        ("aws_kms_alias.data", "name"),
        ("aws_secretsmanager_secret.card_token_key", "name"),
    ],
)
def test_names_come_from_variables(
    tf: dict[str, dict[str, Body]], resource: str, field: str
) -> None:
    assert "${var." in attr(tf["resource"][resource], field)


def test_variable_defaults_match_config(tf: dict[str, dict[str, Body]]) -> None:
    settings = load_config("aws", environ={})

    def default(name: str) -> Any:
        return attr(tf["variable"][name], "default")

    assert default("stream_name") == settings.kinesis.stream_name
    assert default("shard_count") == settings.kinesis.shard_count
    assert default("alerts_table_name") == settings.dynamodb.alerts_table
    assert default("aws_region") == settings.aws.region


# --- resources ------------------------------------------------------------------------------------


def test_stream_is_encrypted_with_its_key(tf: dict[str, dict[str, Body]]) -> None:
    stream = tf["resource"]["aws_kinesis_stream.transactions"]
    assert attr(stream, "encryption_type") == "KMS"
    assert attr(stream, "kms_key_id") == "${aws_kms_key.stream.arn}"
    assert attr(blocks(stream, "stream_mode_details")[0], "stream_mode") == "${var.stream_mode}"
    for key in ("stream", "data"):
        assert attr(tf["resource"][f"aws_kms_key.{key}"], "enable_key_rotation") is True


def test_alerts_table(tf: dict[str, dict[str, Body]]) -> None:
    table = tf["resource"]["aws_dynamodb_table.alerts"]
    assert attr(table, "hash_key") == "transaction_id"
    assert attr(table, "range_key") is None
    assert [(attr(a, "name"), attr(a, "type")) for a in blocks(table, "attribute")] == [
        ("transaction_id", "S")
    ]
    assert attr(table, "billing_mode") == "PAY_PER_REQUEST"
    assert attr(blocks(table, "point_in_time_recovery")[0], "enabled") is True
    ttl = blocks(table, "ttl")[0]
    assert (attr(ttl, "attribute_name"), attr(ttl, "enabled")) == ("expires_at", True)
    sse = blocks(table, "server_side_encryption")[0]
    assert attr(sse, "enabled") is True
    assert attr(sse, "kms_key_arn") == "${aws_kms_key.data.arn}"


def test_bucket_is_private_versioned_encrypted(tf: dict[str, dict[str, Body]]) -> None:
    resources = tf["resource"]
    block = resources["aws_s3_bucket_public_access_block.lake"]
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert attr(block, flag) is True, flag
    versioning = blocks(resources["aws_s3_bucket_versioning.lake"], "versioning_configuration")
    assert attr(versioning[0], "status") == "Enabled"
    rule = blocks(resources["aws_s3_bucket_server_side_encryption_configuration.lake"], "rule")[0]
    default = blocks(rule, "apply_server_side_encryption_by_default")[0]
    assert attr(default, "sse_algorithm") == "aws:kms"
    assert attr(default, "kms_master_key_id") == "${aws_kms_key.data.arn}"
    for name in (
        "ownership_controls",
        "public_access_block",
        "versioning",
        "policy",
        "lifecycle_configuration",
    ):
        assert attr(resources[f"aws_s3_bucket_{name}.lake"], "bucket") == "${aws_s3_bucket.lake.id}"


def test_lifecycle_never_expires_current_lake_objects(tf: dict[str, dict[str, Body]]) -> None:
    rules = blocks(tf["resource"]["aws_s3_bucket_lifecycle_configuration.lake"], "rule")
    by_prefix = {}
    for rule in rules:
        assert attr(rule, "status") == "Enabled"
        filters = blocks(rule, "filter")
        prefix = attr(filters[0], "prefix", "") if filters and filters[0] else ""
        by_prefix[prefix] = rule
        # Delta's VACUUM owns current data files: only delete markers may expire.
        for expiration in blocks(rule, "expiration"):
            assert set(k for k in expiration if not k.startswith("__")) == {
                "expired_object_delete_marker"
            }
    assert set(by_prefix) == {"", "lake/", "checkpoints/", "models/"}
    assert blocks(by_prefix[""], "abort_incomplete_multipart_upload")
    for prefix in ("lake/", "checkpoints/", "models/"):
        assert blocks(by_prefix[prefix], "noncurrent_version_expiration"), prefix


def test_bucket_denies_plain_http(tf: dict[str, dict[str, Body]]) -> None:
    (statement,) = _statements(tf, "lake_bucket")
    assert attr(statement, "effect") == "Deny"
    condition = blocks(statement, "condition")[0]
    assert (attr(condition, "variable"), attr(condition, "values")) == (
        "aws:SecureTransport",
        ["false"],
    )


# --- IAM -----------------------------------------------------------------------------------


def _no_wildcards(statements: list[Body]) -> None:
    for statement in statements:
        assert attr(statement, "effect", "Allow") == "Allow"
        for action in attr(statement, "actions"):
            assert "*" not in action, action
        for resource in _strings(attr(statement, "resources")):
            assert resource != "*", statement


def test_producer_may_only_put_to_the_stream(tf: dict[str, dict[str, Body]]) -> None:
    statements = _statements(tf, "producer")
    _no_wildcards(statements)
    actions = _actions(statements)
    assert actions <= PRODUCER_ALLOWED
    assert {"kinesis:PutRecords", "kms:GenerateDataKey"} <= actions
    for statement in statements:
        resources = attr(statement, "resources")
        service = attr(statement, "actions")[0].split(":")[0]
        expected = {
            "kinesis": "${aws_kinesis_stream.transactions.arn}",
            "kms": "${aws_kms_key.stream.arn}",
        }
        assert resources == [expected[service]]


def test_processor_grants(tf: dict[str, dict[str, Body]]) -> None:
    statements = _statements(tf, "processor")
    _no_wildcards(statements)
    actions = _actions(statements)
    assert actions <= PROCESSOR_ALLOWED
    by_sid = {attr(s, "sid"): s for s in statements}
    assert attr(by_sid["WriteAlerts"], "resources") == ["${aws_dynamodb_table.alerts.arn}"]
    assert attr(by_sid["ReadTheStream"], "resources") == ["${aws_kinesis_stream.transactions.arn}"]
    # Object access only under the processor's prefixes; models are read-only.
    assert (
        attr(by_sid["ReadWriteLakeAndCheckpoints"], "resources") == "${local.processor_rw_objects}"
    )
    assert attr(by_sid["ReadModels"], "actions") == ["s3:GetObject"]
    assert attr(by_sid["ReadModels"], "resources") == "${local.processor_ro_objects}"
    rw = attr(tf["locals"], "processor_rw_prefixes")
    ro = attr(tf["locals"], "processor_ro_prefixes")
    assert (sorted(rw), ro) == (["checkpoints", "lake"], ["models"])
    for name in ("processor_rw_objects", "processor_ro_objects"):
        assert "${aws_s3_bucket.lake.arn}/${p}/*" in _locals(tf, name)
    listing = blocks(by_sid["ListOwnPrefixes"], "condition")[0]
    assert (attr(listing, "variable"), attr(listing, "values")) == (
        "s3:prefix",
        "${local.processor_list_prefixes}",
    )
    endpoint = by_sid["InvokeTheScoringEndpoint"]
    assert attr(endpoint, "resources") == "${local.sagemaker_endpoint_arns}"
    assert ":endpoint/${lower(var.sagemaker_endpoint_name)}" in _locals(
        tf, "sagemaker_endpoint_arns"
    )


@pytest.mark.parametrize(
    "document", ["producer", "processor", "console", "retrain", "lake_maintenance"]
)
def test_kms_use_is_limited_to_its_service(tf: dict[str, dict[str, Body]], document: str) -> None:
    for statement in _statements(tf, document):
        if attr(statement, "actions")[0].startswith("kms:"):
            assert set(attr(statement, "actions")) <= {"kms:Decrypt", "kms:GenerateDataKey"}
            condition = blocks(statement, "condition")[0]
            assert attr(condition, "variable") == "kms:ViaService"
            for value in attr(condition, "values"):
                assert re.fullmatch(
                    r"(kinesis|s3|dynamodb)\.\$\{var\.aws_region\}\.amazonaws\.com", value
                )


# The code each role runs; the console lives in processor/ but runs under its own role.
ROLE_CODE = {
    "producer": ("producer", None),
    "processor": ("processor", "processor/console"),
    "console": ("processor/console", None),
}


def _boto3_calls(folder: Path, exclude: Path | None = None) -> set[str]:
    calls = set()
    for path in folder.rglob("*.py"):
        if exclude is not None and path.is_relative_to(exclude):
            continue
        for name in re.findall(r"\.([a-z_0-9]+)\(", path.read_text()):
            if name in BOTO3_ACTIONS:
                calls.add(name)
    return calls


@pytest.mark.parametrize("role", sorted(ROLE_CODE))
def test_policies_cover_the_calls_in_the_code(tf: dict[str, dict[str, Body]], role: str) -> None:
    code, exclude = ROLE_CODE[role]
    calls = _boto3_calls(ROOT / code, ROOT / exclude if exclude else None)
    assert calls, f"no AWS calls found in {code}/"
    granted = _actions(_statements(tf, role))
    missing = {call: BOTO3_ACTIONS[call] for call in calls if BOTO3_ACTIONS[call] not in granted}
    assert not missing, f"{role}/ calls AWS APIs its role may not: {missing}"


@pytest.mark.parametrize("role", ["producer", "processor", "retrain", "lake_maintenance"])
def test_trust_policies_name_the_service_accounts(
    tf: dict[str, dict[str, Body]], role: str
) -> None:
    (statement,) = _statements(tf, f"{role}_trust")
    assert attr(statement, "actions") == ["sts:AssumeRoleWithWebIdentity"]
    principal = blocks(statement, "principals")[0]
    assert (attr(principal, "type"), attr(principal, "identifiers")) == (
        "Federated",
        ["${var.oidc_provider_arn}"],
    )
    conditions = {attr(c, "variable"): c for c in blocks(statement, "condition")}
    assert set(conditions) == {"${local.oidc_issuer}:sub", "${local.oidc_issuer}:aud"}
    assert all(attr(c, "test") == "StringEquals" for c in conditions.values())
    assert attr(conditions["${local.oidc_issuer}:aud"], "values") == ["sts.amazonaws.com"]
    assert attr(conditions["${local.oidc_issuer}:sub"], "values") == f"${{local.{role}_subjects}}"
    assert "system:serviceaccount:${var.k8s_namespace}:" in _locals(tf, f"{role}_subjects")


def test_service_accounts_match_the_manifests(tf: dict[str, dict[str, Body]]) -> None:
    accounts = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((K8S_BASE / "serviceaccounts.yaml").read_text())
    }
    namespace = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())["namespace"]
    assert attr(tf["variable"]["k8s_namespace"], "default") == namespace
    producer = attr(tf["variable"]["producer_service_account"], "default")
    processor = attr(tf["variable"]["processor_service_accounts"], "default")
    retrain = attr(tf["variable"]["retrain_service_account"], "default")
    maintenance = attr(tf["variable"]["lake_maintenance_service_account"], "default")
    assert {producer, *processor, retrain, maintenance} == accounts


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tfvars_match_the_overlay(tf: dict[str, dict[str, Body]], env: str) -> None:
    values = _tfvars(env)
    overlay = yaml.safe_load((OVERLAYS / env / "kustomization.yaml").read_text())
    (generator,) = [g for g in overlay["configMapGenerator"] if g["name"] == "fraud-env"]
    literals = dict(item.split("=", 1) for item in generator["literals"])
    assert literals == {
        "FRAUD_REGION": values["aws_region"],
        "FRAUD_STREAM_NAME": values["stream_name"],
        "FRAUD_ALERTS_TABLE": values["alerts_table_name"],
        "FRAUD_BUCKET": values["bucket_name"],
    }


# --- IRSA: every ServiceAccount of the manifests against the roles' trust policies -----------

Scope = dict[str, Any]


def _variables(tf: dict[str, dict[str, Body]], env: str) -> Scope:
    """`var.*` as `terraform apply -var-file=environments/<env>.tfvars` sees them."""
    values = {name: attr(body, "default") for name, body in tf["variable"].items()}
    return {f"var.{name}": value for name, value in (values | _tfvars(env)).items()}


def _interpolate(text: str, scope: Scope) -> str:
    def value(match: re.Match[str]) -> str:
        assert match[1] in scope, f"cannot evaluate ${{{match[1]}}} in {text!r}"
        return str(scope[match[1]])

    result = re.sub(r"\$\{([a-z_][a-z0-9_.]*)\}", value, text)
    assert "${" not in result, f"cannot evaluate {text!r}"
    return result


def _evaluate(tf: dict[str, dict[str, Body]], value: Any, scope: Scope) -> list[str]:
    """A list of strings as Terraform computes it, for the expressions trust policies use:
    literals, `${var.x}` templates, `local.x`, and `[for a in var.list : "...${a}..."]`.
    Anything else fails the test rather than being guessed."""
    if isinstance(value, list):
        return [item for element in value for item in _evaluate(tf, element, scope)]
    assert isinstance(value, str), value
    local = re.fullmatch(r"\$\{local\.(\w+)\}", value)
    if local:
        return _evaluate(tf, attr(tf["locals"], local[1]), scope)
    loop = re.fullmatch(r'\$\{\[for (\w+) in (var\.\w+) : "(.*)"\]\}', value, flags=re.DOTALL)
    if loop:
        name, items, template = loop.groups()
        return [_interpolate(template, scope | {name: item}) for item in scope[items]]
    return [_interpolate(value, scope)]


def _irsa_roles(tf: dict[str, dict[str, Body]], env: str) -> dict[str, set[str]]:
    """{IAM role name in `env`: the `system:serviceaccount:<ns>:<name>` its trust accepts}."""
    scope = _variables(tf, env)
    roles = {}
    for key, role in tf["resource"].items():
        if not key.startswith("aws_iam_role."):
            continue
        trust = re.fullmatch(
            r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", attr(role, "assume_role_policy")
        )
        assert trust, f"{key}: the trust policy is not an aws_iam_policy_document"
        subjects: set[str] = set()
        for statement in _statements(tf, trust[1]):
            assert attr(statement, "actions") == ["sts:AssumeRoleWithWebIdentity"], key
            principal = blocks(statement, "principals")[0]
            assert attr(principal, "identifiers") == ["${var.oidc_provider_arn}"], key
            conditions = {attr(c, "variable"): c for c in blocks(statement, "condition")}
            # Without an exact `sub` any service account of the cluster could take the role.
            sub = conditions["${local.oidc_issuer}:sub"]
            assert attr(sub, "test") == "StringEquals", key
            assert attr(conditions["${local.oidc_issuer}:aud"], "values") == ["sts.amazonaws.com"]
            subjects.update(_evaluate(tf, attr(sub, "values"), scope))
        roles[_interpolate(attr(role, "name"), scope)] = subjects
    return roles


def test_trust_subjects_are_evaluated(tf: dict[str, dict[str, Body]]) -> None:
    """The evaluator above reads what the trust policies say (so the test below can trust it)."""
    roles = _irsa_roles(tf, "dev")
    assert roles["fraud-dev-processor"] == {
        "system:serviceaccount:fraud:fraud-processor",
        "system:serviceaccount:fraud:fraud-processor-executor",
    }
    assert roles["fraud-dev-retrain"] == {"system:serviceaccount:fraud:fraud-retrain"}
    assert roles["fraud-dev-lake-maintenance"] == {
        "system:serviceaccount:fraud:fraud-lake-maintenance"
    }
    assert all(len(subjects) >= 1 for subjects in roles.values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_account_maps_to_a_role_that_trusts_it(
    tf: dict[str, dict[str, Body]], env: str
) -> None:
    """Each ServiceAccount `kubectl apply -k overlays/<env>` creates names, in its IRSA
    annotation, a role of this stack (with <env>.tfvars) whose trust policy accepts exactly
    that namespace and account. A renamed account, namespace or role fails here, not in EKS."""
    roles = _irsa_roles(tf, env)
    account_id = re.search(r"::(\d{12}):", _tfvars(env)["oidc_provider_arn"])
    assert account_id
    accounts = [d for d in render_kustomization(OVERLAYS / env) if d["kind"] == "ServiceAccount"]
    assert accounts
    for account in accounts:
        meta = account["metadata"]
        arn = meta.get("annotations", {}).get("eks.amazonaws.com/role-arn")
        assert arn, f"ServiceAccount {meta['name']} has no IRSA role"
        role = re.fullmatch(rf"arn:aws:iam::{account_id[1]}:role/([\w+=,.@-]+)", arn)
        assert role, f"{meta['name']}: {arn} is not a role of account {account_id[1]}"
        assert role[1] in roles, f"{meta['name']}: no aws_iam_role is named {role[1]}"
        subject = f"system:serviceaccount:{meta['namespace']}:{meta['name']}"
        assert subject in roles[role[1]], f"{role[1]} trusts {roles[role[1]]}, not {subject}"


# --- the retraining role: reads the lake, writes models/next only ---------------------------

BUCKET_ARN = "arn:aws:s3:::example-bucket"


def _condition_holds(condition: Body, s3_prefix: str | None) -> bool:
    if attr(condition, "variable") != "s3:prefix":
        return True  # kms:ViaService and the like narrow further; not modelled here
    assert attr(condition, "test") == "StringLike"
    values = attr(condition, "values")
    assert isinstance(values, list), "s3:prefix values must be literal to be checked"
    return s3_prefix is not None and any(fnmatch.fnmatchcase(s3_prefix, v) for v in values)


def _allows(
    statements: list[Body], action: str, key: str | None, s3_prefix: str | None = None
) -> bool:
    """Whether the statements allow `action` on the bucket (key None) or on one of its keys."""
    resource = BUCKET_ARN if key is None else f"{BUCKET_ARN}/{key}"
    for statement in statements:
        if attr(statement, "effect", "Allow") != "Allow" or action not in attr(
            statement, "actions"
        ):
            continue
        resources = attr(statement, "resources")
        assert isinstance(resources, list), f"{attr(statement, 'sid')}: resources not literal"
        patterns = [r.replace("${aws_s3_bucket.lake.arn}", BUCKET_ARN) for r in resources]
        if any(fnmatch.fnmatchcase(resource, p) for p in patterns) and all(
            _condition_holds(c, s3_prefix) for c in blocks(statement, "condition")
        ):
            return True
    return False


def test_retrain_role_writes_only_the_candidate_model(tf: dict[str, dict[str, Body]]) -> None:
    statements = _statements(tf, "retrain")
    _no_wildcards(statements)
    actions = _actions(statements)
    assert actions <= RETRAIN_ALLOWED, "nothing on Kinesis, DynamoDB or SageMaker"
    # The only write is PutObject, and only under models/next/.
    assert {a for a in actions if a.startswith("s3:")} - {"s3:ListBucket", "s3:GetObject"} == {
        "s3:PutObject"
    }
    for name in (MODEL_FILE, CARD_FILE):
        assert _allows(statements, "s3:PutObject", f"models/next/{name}")
    for key in (
        f"models/current/{MODEL_FILE}",
        f"models/current/{CARD_FILE}",
        f"models/current/previous/v1/{MODEL_FILE}",
        "models/promotions.jsonl",
        f"models/nextgen/{MODEL_FILE}",
        f"models/{MODEL_FILE}",
        "lake/transactions/part-00000.parquet",
        "lake/transactions/_delta_log/00000000000000000001.json",
        "checkpoints/offsets/0",
    ):
        assert not _allows(statements, "s3:PutObject", key), key
    # delta-rs lists the tables' logs and reads their files: under lake/ only.
    log = "lake/transactions/_delta_log/"
    assert _allows(statements, "s3:ListBucket", None, s3_prefix=log)
    assert _allows(statements, "s3:GetObject", f"{log}00000000000000000000.json")
    for prefix in ("", "checkpoints/", "models/"):
        assert not _allows(statements, "s3:ListBucket", None, s3_prefix=prefix), prefix
    for key in ("checkpoints/offsets/0", f"models/current/{MODEL_FILE}"):
        assert not _allows(statements, "s3:GetObject", key), key
    # The bucket's key, through S3 only (not DynamoDB: the role never touches the alerts).
    (kms,) = [s for s in statements if attr(s, "actions")[0].startswith("kms:")]
    assert attr(kms, "resources") == ["${aws_kms_key.data.arn}"]
    assert attr(blocks(kms, "condition")[0], "values") == ["s3.${var.aws_region}.amazonaws.com"]


def test_retrain_role_covers_what_the_cronjob_runs(tf: dict[str, dict[str, Body]]) -> None:
    """The paths the CronJob passes and the AWS calls training makes are what the role grants."""
    statements = _statements(tf, "retrain")
    args = cronjob_args("retrain-cronjob.yaml")
    bucket = "$(FRAUD_BUCKET)"
    output = args[args.index("--output") + 1]
    history = args[args.index("--history") + 1]
    assert output.startswith(f"s3://{bucket}/") and history.startswith(f"s3a://{bucket}/")
    prefix = output.removeprefix(f"s3://{bucket}/").strip("/")
    assert prefix == "models/next"
    for name in (MODEL_FILE, CARD_FILE):
        assert _allows(statements, "s3:PutObject", f"{prefix}/{name}")
    lake = history.removeprefix(f"s3a://{bucket}/").strip("/")
    log = f"{lake}/transactions/_delta_log/"
    assert _allows(statements, "s3:ListBucket", None, s3_prefix=log)
    assert _allows(statements, "s3:GetObject", f"{log}00000000000000000000.json")
    # boto3 calls on training's path (delta-rs reads the lake with its own client).
    code = "".join(inspect.getsource(m) for m in (ml_model.train, ml_model.history))
    code += inspect.getsource(write_artifacts)
    calls = {name for name in re.findall(r"\.([a-z_0-9]+)\(", code) if name in BOTO3_ACTIONS}
    assert calls == {"put_object"}
    assert {BOTO3_ACTIONS[call] for call in calls} <= _actions(statements)


# --- terraform fmt -------------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform not installed")
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", "-no-color"],
        cwd=TF,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive` in {TF}:\n{result.stdout}"


# --- checkov -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report() -> Body:
    local = Path(sys.executable).parent / "checkov"
    binary = str(local) if local.exists() else shutil.which("checkov")
    if binary is None:
        pytest.skip("checkov not installed")
    result = subprocess.run(
        [binary, "-d", str(TF), "--framework", "terraform", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report: Body = json.loads(result.stdout)
    return report


@pytest.mark.integration
def test_checkov_passes(checkov_report: Body) -> None:
    failed = [(c["check_id"], c["resource"]) for c in checkov_report["results"]["failed_checks"]]
    assert not failed
    assert checkov_report["summary"]["passed"] > 50


@pytest.mark.integration
def test_checkov_skips_are_explained(checkov_report: Body) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        assert check["check_id"] in ALLOWED_CHECKOV_SKIPS, check["check_id"]
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


# --- the lake maintenance's role: rewrites lake/, nothing else --------------------------------


def test_lake_maintenance_role_rewrites_only_the_lake(tf: dict[str, dict[str, Body]]) -> None:
    statements = _statements(tf, "lake_maintenance")
    _no_wildcards(statements)
    assert _actions(statements) <= LAKE_MAINTENANCE_ALLOWED, "nothing on Kinesis or DynamoDB"
    log = "lake/transactions/_delta_log/"
    data = "lake/transactions/event_date=2026-11-30/part-00000.zstd.parquet"
    assert _allows(statements, "s3:ListBucket", None, s3_prefix=log)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        for key in (data, f"{log}00000000000000000201.json"):
            assert _allows(statements, action, key), (action, key)
    for key in (
        "checkpoints/offsets/0",
        "checkpoints/late-threshold.json",
        f"models/current/{MODEL_FILE}",
        f"models/next/{CARD_FILE}",
        "models/promotions.jsonl",
        "lakehouse/transactions/part-00000.parquet",
    ):
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert not _allows(statements, action, key), (action, key)
    for prefix in ("", "checkpoints/", "models/"):
        assert not _allows(statements, "s3:ListBucket", None, s3_prefix=prefix), prefix
    (kms,) = [s for s in statements if attr(s, "actions")[0].startswith("kms:")]
    assert attr(kms, "resources") == ["${aws_kms_key.data.arn}"]
    assert attr(blocks(kms, "condition")[0], "values") == ["s3.${var.aws_region}.amazonaws.com"]


def test_lake_maintenance_role_covers_what_the_cronjob_runs(
    tf: dict[str, dict[str, Body]],
) -> None:
    """The lake the CronJob maintains (the aws profile's, as it passes no --lake-path) is what
    the role may rewrite, and its boto3 calls (the compaction lease; delta-rs has its own
    client) are on keys the role grants."""
    args = cronjob_args("lake-maintenance-cronjob.yaml")
    assert args[0] == "processor.lake_maintenance" and "--lake-path" not in args
    bucket = "example-bucket"
    lake = load_config("aws", environ={"FRAUD_BUCKET": bucket}).processor.lake_path
    prefix = lake.removeprefix(f"s3a://{bucket}/").strip("/")
    assert prefix == "lake"
    statements = _statements(tf, "lake_maintenance")
    log = f"{prefix}/transactions/_delta_log/"
    assert _allows(statements, "s3:ListBucket", None, s3_prefix=log)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert _allows(statements, action, f"{log}00000000000000000000.json"), action
    modules = (processor.lake_maintenance, processor.lake_commit, processor.compaction_lease)
    code = "".join(inspect.getsource(m) for m in modules)
    calls = {name for name in re.findall(r"\.([a-z_0-9]+)\(", code) if name in BOTO3_ACTIONS}
    assert calls == {"get_object", "put_object"}
    lease = f"{prefix}/transactions/{LEASE_NAME}"
    for call in calls:
        assert _allows(statements, BOTO3_ACTIONS[call], lease), call
