"""SageMaker scoring end to end: inference functions, the local endpoint, the scorer, deploy.

The model is a real HistGradientBoostingClassifier fitted on synthetic feature rows (training
on generated history takes minutes); the endpoint is `LocalEndpoint`, a real HTTP server that
boto3's `sagemaker-runtime` client calls; deploy runs against the session's moto server.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from config.aws import make_client
from config.exceptions import ConfigError, ModelError, ScorerUnavailableError
from config.settings import AwsSettings, Settings, load_config
from ml_model.artifacts import ModelCard, read_model, write_artifacts
from ml_model.features import FEATURE_NAMES
from ml_model.sagemaker import (
    LocalEndpoint,
    inference_code,
    input_fn,
    model_fn,
    output_fn,
    package_model,
    predict_fn,
)
from ml_model.sagemaker.deploy import check_options, deploy, model_key, resource_name
from ml_model.sagemaker.deploy import main as deploy_main
from ml_model.sagemaker.inference import transform
from ml_model.scorer import SCORE_COLUMNS, LocalScorer
from processor.sagemaker_scorer import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    UNAVAILABLE,
    CircuitBreaker,
    SageMakerScorer,
)
from scripts.local_aws import free_port

NAMES = list(FEATURE_NAMES)
# Features that are often missing in the stream (no previous transaction, no terminal history).
SPARSE = [name for name in NAMES if "prev" in name or name.startswith("terminal_risk")]


def feature_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.gamma(2.0, 2.0, size=(n, len(NAMES))), columns=NAMES)
    frame["tx_amount"] = rng.lognormal(3.5, 1.0, n)
    for name in ("tx_is_ecom", "tx_is_atm", "tx_is_night", "tx_is_weekend", "card_new_device"):
        frame[name] = rng.integers(0, 2, n).astype(float)
    for name in SPARSE:
        frame.loc[rng.random(n) < 0.2, name] = np.nan
    return frame


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small real model + card written with write_artifacts."""
    train = feature_rows(3000, seed=1)
    logit = (
        0.9 * np.log(train["tx_amount"])
        + 0.4 * train["card_tx_count_10m"]
        + 1.5 * train["card_new_device"]
        + 0.6 * train["card_km_from_prev"].fillna(0) / 4
        - 7.0
    )
    labels = np.random.default_rng(2).random(len(train)) < 1 / (1 + np.exp(-logit))
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    with threadpool_limits(1):  # OpenMP threads only contend on a small, busy machine
        model.fit(train.to_numpy(float), labels)
    scores = model.predict_proba(train.to_numpy(float))[:, 1]
    threshold = float(np.quantile(scores, 0.9))
    genuine = train[~labels]
    card = ModelCard(
        version=f"test-{uuid.uuid4().hex[:8]}",
        created_at="2026-01-01T00:00:00+00:00",
        model_type="sklearn.ensemble.HistGradientBoostingClassifier",
        feature_names=NAMES,
        threshold=threshold,
        threshold_policy="alert_rate=0.1",
        review_threshold=threshold * 0.5,
        training_window={"start": "2025-12-01", "end": "2025-12-20"},
        test_window={"start": "2025-12-24", "end": "2025-12-31"},
        data_hash="sha256:test",
        reference_values={name: float(genuine[name].median()) for name in NAMES},
    )
    path = tmp_path_factory.mktemp("sagemaker-model")
    write_artifacts(str(path), model, card)
    return str(path)


@pytest.fixture(scope="module")
def local(model_dir: str) -> LocalScorer:
    model, card = read_model(model_dir)
    return LocalScorer(model, card)


@pytest.fixture
def frame() -> pd.DataFrame:
    """Feature rows plus a pass-through column, on a non-default index."""
    rows = feature_rows(300, seed=7)
    rows.insert(0, "transaction_id", [f"tx-{i}" for i in range(len(rows))])
    rows.index = pd.RangeIndex(1000, 1000 + len(rows))
    return rows


@pytest.fixture
def endpoint(model_dir: str) -> Iterator[LocalEndpoint]:
    server = LocalEndpoint(model_dir).start()
    yield server
    server.stop()


def aws_for(url: str) -> AwsSettings:
    return AwsSettings(
        region="us-east-1",
        endpoint_url=url,
        access_key_id="testing",
        secret_access_key="testing",
        connect_timeout_s=1,
        read_timeout_s=5,
        max_attempts=3,
    )


def scorer_for(endpoint: LocalEndpoint, card: ModelCard, **options: Any) -> SageMakerScorer:
    """A scorer with a unique endpoint name: breakers are per endpoint and per process."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    return SageMakerScorer(name, aws_for(endpoint.url), card, backoff_s=0.01, **options)


def request_body(rows: pd.DataFrame, names: list[str] | None = None) -> str:
    names = names or NAMES
    values = [[None if pd.isna(v) else float(v) for v in row] for row in rows[names].to_numpy()]
    return json.dumps({"features": names, "instances": values})


def member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle.read()


def assert_unavailable(scored: pd.DataFrame, card: ModelCard) -> None:
    assert (scored["decision"] == "REVIEW").all()
    assert scored["fraud_score"].isna().all()
    assert (scored["model_version"] == card.version).all()
    assert all(codes == [UNAVAILABLE] for codes in scored["reason_codes"])


# -- inference functions ---------------------------------------------------------------


def test_input_fn_reads_nulls_as_nan(frame: pd.DataFrame) -> None:
    request = input_fn(request_body(frame.head(20)).encode(), "application/json; charset=utf-8")
    assert request.features == NAMES
    assert request.instances.shape == (20, len(NAMES))
    expected = frame.head(20)[NAMES].to_numpy(float)
    np.testing.assert_array_equal(np.isnan(request.instances), np.isnan(expected))
    assert np.isnan(request.instances).any()
    np.testing.assert_array_equal(request.instances, expected)
    empty = input_fn(json.dumps({"features": NAMES, "instances": []}), "application/json")
    assert empty.instances.shape == (0, len(NAMES))


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ('{"features": ["a"], "instances": [[1]]}', "text/csv", "unsupported ContentType"),
        ("{not json", "application/json", "not valid JSON"),
        ('{"features": "a", "instances": [[1]]}', "application/json", "'features'"),
        ('{"features": ["a", "a"], "instances": []}', "application/json", "twice"),
        ('{"features": ["a", "b"], "instances": [[1]]}', "application/json", "row 0 has 1"),
        ('{"features": ["a"], "instances": [["x"]]}', "application/json", "numbers or null"),
        ('{"features": ["a"], "instances": [[true]]}', "application/json", "numbers or null"),
        ('{"features": ["a"], "instances": [[1]], "reason_threshold": "x"}', None, "ContentType"),
        (
            '{"features": ["a"], "instances": [[1]], "reason_threshold": "x"}',
            "application/json",
            "'reason_threshold'",
        ),
    ],
)
def test_input_fn_rejects_malformed_requests(
    body: str, content_type: str | None, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        input_fn(body, content_type)


def test_predict_fn_rejects_other_feature_names(local: LocalScorer, frame: pd.DataFrame) -> None:
    missing = input_fn(request_body(frame.head(3), NAMES[:-1]), "application/json")
    with pytest.raises(ModelError, match=r"'features' does not match model test-.*missing \['"):
        predict_fn(missing, local)
    reordered = input_fn(request_body(frame.head(3), NAMES[::-1]), "application/json")
    with pytest.raises(ModelError, match="same names in a different order"):
        predict_fn(reordered, local)


def test_functions_score_like_the_local_scorer(
    model_dir: str, local: LocalScorer, frame: pd.DataFrame
) -> None:
    served = model_fn(model_dir)
    assert served.card == local.card
    body, content_type = transform(served, request_body(frame), "application/json", "*/*")
    assert content_type == "application/json"
    answer = json.loads(body)
    expected = local.score(frame)
    assert answer["model_version"] == local.card.version
    np.testing.assert_array_equal(answer["scores"], expected["fraud_score"].to_numpy())
    assert answer["reason_codes"] == list(expected["reason_codes"])
    flagged = expected["decision"] != "OK"
    assert flagged.any() and (~flagged).any()
    assert any(answer["reason_codes"][i] for i in np.flatnonzero(flagged))


def test_reason_threshold_in_the_request(local: LocalScorer, frame: pd.DataFrame) -> None:
    payload = json.loads(request_body(frame))
    everything = input_fn(json.dumps({**payload, "reason_threshold": 0.0}), "application/json")
    prediction = predict_fn(everything, local)
    assert len(prediction.reason_codes) == len(frame)
    nothing = input_fn(json.dumps({**payload, "reason_threshold": 1.01}), "application/json")
    assert all(codes == [] for codes in predict_fn(nothing, local).reason_codes)


def test_output_fn_answers_json_only(local: LocalScorer, frame: pd.DataFrame) -> None:
    prediction = predict_fn(input_fn(request_body(frame.head(2)), "application/json"), local)
    body, content_type = output_fn(prediction, "application/json")
    assert set(json.loads(body)) == {"model_version", "scores", "reason_codes"}
    assert output_fn(prediction, None)[1] == "application/json"
    with pytest.raises(ModelError, match="unsupported Accept 'text/csv'"):
        output_fn(prediction, "text/csv")


# -- the local endpoint ------------------------------------------------------------------


def test_container_routes(endpoint: LocalEndpoint, frame: pd.DataFrame) -> None:
    with urllib.request.urlopen(endpoint.url + "/ping", timeout=5) as response:
        assert response.status == 200
    request = urllib.request.Request(
        endpoint.url + "/invocations",
        data=request_body(frame.head(5)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert len(json.loads(response.read())["scores"]) == 5
    bad = urllib.request.Request(
        endpoint.url + "/invocations", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(bad, timeout=5)
    assert error.value.code == 400
    assert b"'features'" in error.value.read()


def test_runtime_route_through_boto3(endpoint: LocalEndpoint, frame: pd.DataFrame) -> None:
    client = make_client("sagemaker-runtime", aws_for(endpoint.url))
    response = client.invoke_endpoint(
        EndpointName="any-name",
        Body=request_body(frame.head(4)),
        ContentType="application/json",
        Accept="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert len(json.loads(response["Body"].read())["scores"]) == 4
    # A container error comes back as the runtime's ModelError with the original status.
    with pytest.raises(ClientError) as error:
        client.invoke_endpoint(
            EndpointName="any-name",
            Body=request_body(frame.head(4), NAMES[::-1]),
            ContentType="application/json",
        )
    answer = error.value.response
    assert answer["Error"]["Code"] == "ModelError"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert answer.get("OriginalStatusCode") == 400
    assert "same names in a different order" in answer["Error"]["Message"]


def test_endpoint_name_is_checked_when_given(model_dir: str) -> None:
    with LocalEndpoint(model_dir, endpoint_name="fraud-scorer") as server:
        client = make_client("sagemaker-runtime", aws_for(server.url))
        with pytest.raises(ClientError, match="Endpoint other not found"):
            client.invoke_endpoint(EndpointName="other", Body=b"{}", ContentType="application/json")


def test_serve_cli_answers_ping(model_dir: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_model.sagemaker.serve",
            "--model-dir",
            model_dir,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout and process.stdout.read()
                assert time.monotonic() < deadline, "the server did not answer /ping"
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- SageMakerScorer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold_factor", "review_band"), [(None, None), (None, 0.5), (0.8, 0.3)]
)
def test_scorer_matches_the_local_scorer(
    endpoint: LocalEndpoint,
    local: LocalScorer,
    frame: pd.DataFrame,
    threshold_factor: float | None,
    review_band: float | None,
) -> None:
    """Same frame, same model: the same scores, decisions and reasons (overrides included)."""
    threshold = None if threshold_factor is None else local.card.threshold * threshold_factor
    remote = scorer_for(endpoint, local.card, threshold=threshold, review_band=review_band)
    expected = LocalScorer(local.model, local.card, threshold, review_band).score(frame)
    scored = remote.score(frame)
    assert endpoint.invocations == 1
    assert list(scored.columns) == [*frame.columns, *SCORE_COLUMNS]
    assert scored.index.equals(frame.index)
    pd.testing.assert_frame_equal(scored[frame.columns], frame)
    np.testing.assert_array_equal(scored["fraud_score"], expected["fraud_score"])
    assert list(scored["decision"]) == list(expected["decision"])
    assert list(scored["reason_codes"]) == list(expected["reason_codes"])
    assert (scored["model_version"] == local.card.version).all()
    assert set(scored["decision"]) == {"ALERT", "REVIEW", "OK"}


def test_large_frames_are_split_by_payload_size(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame
) -> None:
    remote = scorer_for(endpoint, local.card, max_payload_bytes=20_000)
    scored = remote.score(frame)
    assert endpoint.invocations > 1
    np.testing.assert_array_equal(scored["fraud_score"], local.score(frame)["fraud_score"])


def test_scorer_pickles_and_scores_empty_frames(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame
) -> None:
    remote = scorer_for(endpoint, local.card)
    copy = pickle.loads(pickle.dumps(remote))
    np.testing.assert_array_equal(
        copy.score(frame)["fraud_score"], local.score(frame)["fraud_score"]
    )
    empty = copy.score(frame.head(0))
    assert list(empty.columns) == [*frame.columns, *SCORE_COLUMNS] and empty.empty
    assert endpoint.invocations == 1
    with pytest.raises(ModelError, match="missing from the batch"):
        copy.score(frame.drop(columns=["tx_amount"]))


def test_server_errors_mark_rows_review_and_open_the_breaker(
    endpoint: LocalEndpoint,
    local: LocalScorer,
    frame: pd.DataFrame,
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = scorer_for(
        endpoint, local.card, max_attempts=2, breaker_failures=2, breaker_cooldown_s=0.5
    )
    endpoint.fail_with(500)
    caplog.set_level(logging.WARNING, logger="processor.sagemaker_scorer")
    first = remote.score(frame)
    assert len(first) == len(frame)
    assert_unavailable(first, local.card)
    assert endpoint.invocations == 2  # retried once
    assert remote.breaker.state == CLOSED
    assert_unavailable(remote.score(frame), local.card)
    assert remote.breaker.state == OPEN
    calls = endpoint.invocations
    assert_unavailable(remote.score(frame), local.card)
    assert endpoint.invocations == calls  # open: no call at all
    endpoint.heal()
    time.sleep(0.6)
    recovered = remote.score(frame)
    assert remote.breaker.state == CLOSED
    np.testing.assert_array_equal(recovered["fraud_score"], local.score(frame)["fraud_score"])
    changes = [r.getMessage() for r in caplog.records if "breaker" in r.getMessage()]
    assert len(changes) == 3  # one warning per state change, none per failed call
    for message, change in zip(
        changes, ("closed -> open", "open -> half_open", "half_open -> closed"), strict=True
    ):
        assert change in message
    assert "InternalFailure" in changes[0]  # the last error is named


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retried(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame, status: int
) -> None:
    remote = scorer_for(endpoint, local.card, max_attempts=3, breaker_failures=5)
    endpoint.fail_with(status)
    assert_unavailable(remote.score(frame), local.card)
    assert endpoint.invocations == 3
    assert remote.breaker.state == CLOSED


def test_stopped_server_then_back(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame
) -> None:
    remote = scorer_for(
        endpoint, local.card, max_attempts=2, breaker_failures=1, breaker_cooldown_s=0.3
    )
    endpoint.stop()  # connection refused
    assert_unavailable(remote.score(frame), local.card)
    assert remote.breaker.state == OPEN
    time.sleep(0.35)
    assert_unavailable(remote.score(frame), local.card)  # the half-open trial fails: open again
    assert remote.breaker.state == OPEN
    endpoint.start()  # the same port
    time.sleep(0.35)
    scored = remote.score(frame)
    assert remote.breaker.state == CLOSED
    np.testing.assert_array_equal(scored["fraud_score"], local.score(frame)["fraud_score"])


def test_slow_server_times_out(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame
) -> None:
    remote = scorer_for(endpoint, local.card, timeout_s=0.3, max_attempts=2)
    endpoint.delay(5.0)  # the server would answer after 5 s: the rows prove the client gave up
    assert_unavailable(remote.score(frame), local.card)
    assert endpoint.invocations == 2
    endpoint.heal()
    assert remote.score(frame)["fraud_score"].notna().all()


def test_client_errors_are_not_retried(
    endpoint: LocalEndpoint, local: LocalScorer, frame: pd.DataFrame
) -> None:
    other = ModelCard(**{**local.card.__dict__, "feature_names": NAMES[::-1]})
    remote = scorer_for(endpoint, other, max_attempts=3)
    assert_unavailable(remote.score(frame), other)
    assert endpoint.invocations == 1
    with pytest.raises(ModelError, match="same names in a different order"):
        remote.check_endpoint()


def test_check_endpoint(endpoint: LocalEndpoint, local: LocalScorer) -> None:
    remote = scorer_for(endpoint, local.card, max_attempts=1)
    assert remote.check_endpoint() == local.card.version
    endpoint.stop()
    with pytest.raises(ScorerUnavailableError, match="sagemaker_max_attempts"):
        remote.check_endpoint()


def test_from_settings(local: LocalScorer) -> None:
    settings = load_config("local").with_overrides(
        model={"scorer": "sagemaker", "sagemaker_endpoint": "fraud-scorer", "threshold": 0.4}
    )
    remote = SageMakerScorer.from_settings(settings, local.card)
    assert remote.endpoint_name == "fraud-scorer"
    assert remote.threshold == 0.4
    assert remote.review_threshold == pytest.approx(0.4 * settings.model.review_band)
    assert remote.timeout_s == settings.model.sagemaker_timeout_s
    assert remote.aws == settings.aws.model_dump()


def test_breaker_states_with_a_clock() -> None:
    now = [0.0]
    breaker = CircuitBreaker("e", failures=2, cooldown_s=10, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure("x")
    assert breaker.state == CLOSED and breaker.allow()
    breaker.success()
    breaker.failure("x")
    assert breaker.state == CLOSED  # the success reset the count
    breaker.failure("x")
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 9.9
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.failure("x")
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow()


# -- deploy ------------------------------------------------------------------------------


def test_package_model_is_deterministic_and_complete(model_dir: str) -> None:
    _, card = read_model(model_dir)
    blob = (Path(model_dir) / "model.joblib").read_bytes()
    archive = package_model(blob, card, inference_code())
    assert archive == package_model(blob, card, inference_code())
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
        assert {"model.joblib", "model_card.json", "code/inference.py"} <= set(names)
        assert member(tar, "model.joblib") == blob
        card_json = member(tar, "model_card.json")
    assert ModelCard.from_json(card_json.decode(), "archive") == card
    assert names == sorted(names)
    assert all(member.mtime == 0 for member in tarfile.open(fileobj=io.BytesIO(archive)))


def test_packaged_code_runs_on_its_own(
    model_dir: str, local: LocalScorer, frame: pd.DataFrame, tmp_path: Path
) -> None:
    """The archive's code/ is all the container needs: no project install, no pydantic."""
    _, card = read_model(model_dir)
    archive = package_model((Path(model_dir) / "model.joblib").read_bytes(), card, inference_code())
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    (tmp_path / "request.json").write_text(request_body(frame.head(50)))
    script = (
        "import json, sys; sys.path.insert(0, 'code'); import inference; "
        "scorer = inference.model_fn('.'); "
        "body, _ = inference.transform(scorer, open('request.json').read(), "
        "'application/json', 'application/json'); "
        "mods = [m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in "
        "('ml_model', 'config') and getattr(m, '__file__', None)]; "
        "print(json.dumps({'answer': json.loads(body), 'modules': mods, "
        "'settings': 'config.settings' in sys.modules, 'pydantic': 'pydantic' in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    out = json.loads(result.stdout)
    assert not out["settings"] and not out["pydantic"]
    assert out["modules"] and all(path.startswith(str(tmp_path)) for path in out["modules"])
    expected = local.score(frame.head(50))
    np.testing.assert_array_equal(out["answer"]["scores"], expected["fraud_score"])


def test_names_and_options() -> None:
    version = "20260101T000000Z-abc123"
    assert resource_name("fraud-scorer", version) == f"fraud-scorer-{version}"
    long = resource_name("x" * 63, version)
    assert len(long) <= 63 and long.endswith(version)
    assert model_key(version) == f"models/sagemaker/{version}/model.tar.gz"
    good = ("fraud-scorer", "arn:aws:iam::123456789012:role/sm", "img:1", "ml.m5.large")
    check_options(*good)
    for index, option in enumerate(
        ("--endpoint-name", "--role-arn", "--image-uri", "--instance-type")
    ):
        bad = list(good)
        bad[index] = "not valid_" if index != 2 else " "
        with pytest.raises(ConfigError, match=option):
            check_options(*bad)


@pytest.mark.integration
def test_deploy_against_moto(model_dir: str, settings: Settings) -> None:
    aws = settings.aws
    make_client("s3", aws).create_bucket(Bucket=settings.s3.bucket)
    endpoint_name = f"fraud-{uuid.uuid4().hex[:8]}"
    role = "arn:aws:iam::123456789012:role/sagemaker-execution"
    first = deploy(model_dir, endpoint_name, role, "sklearn:1.9", settings)
    _, card = read_model(model_dir)
    assert first.action == "created"
    assert first.model_data_url == f"s3://{settings.s3.bucket}/{model_key(card.version)}"
    sagemaker = make_client("sagemaker", aws)
    described = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == first.endpoint_config_name
    model = sagemaker.describe_model(ModelName=first.model_name)
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == first.model_data_url
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=first.endpoint_config_name)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    uploaded = (
        make_client("s3", aws)
        .get_object(Bucket=settings.s3.bucket, Key=model_key(card.version))["Body"]
        .read()
    )
    with tarfile.open(fileobj=io.BytesIO(uploaded), mode="r:gz") as tar:
        assert "code/inference.py" in tar.getnames()
    # The same version again: nothing to change (and the waiter sees InService at once).
    code = deploy_main(
        [
            "--model-path",
            model_dir,
            "--endpoint-name",
            endpoint_name,
            "--role-arn",
            role,
            "--image-uri",
            "sklearn:1.9",
            "--wait",
        ],
        settings=settings,
    )
    assert code == 0
    assert deploy(model_dir, endpoint_name, role, "sklearn:1.9", settings).action == "unchanged"
