"""`make demo`: the whole pipeline on the embedded AWS emulator, then a summary.

    python -m scripts.demo [--profile local] [--num-transactions 4000] [--fraud-rate 0.02]

Steps: start moto's server, create the stream / table / bucket, train the model if none exists
at the profile's model path, produce labelled events with fraud and a few broken records, run
the processor (features, scoring, alerts) until the stream is drained (`--available-now`, a few
micro-batches), print a summary and write the run report, `reports/<run id>/index.html`. Each
step is the same command a user would run by hand, so the demo doubles as their walkthrough.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from config.cli import configure_logging, load_settings, new_parser, probe_endpoint, run_cli
from config.exceptions import FraudPipelineError
from ml_model.artifacts import artifacts_exist
from ml_model.report import INDEX
from scripts.local_aws import LocalAws, is_healthy, start, stop
from scripts.setup_aws import setup_resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A demo-only key so that `make demo` runs on a fresh machine; real runs set their own secret.
DEMO_TOKEN_KEY = "demo-only-key-not-for-production"


def _run(step: str, args: list[str], env: dict[str, str]) -> None:
    print(f"\n==> {step}\n    $ {' '.join(args)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo step failed ({step}): exit code {result.returncode}")
    print(f"    ({time.monotonic() - started:.1f}s)", flush=True)


def _console_screenshot(python: str, profile: str, env: dict[str, str], path: Path) -> None:
    """Start the alert console on a free loopback port, save a PNG of its queue, stop it.

    Needs a Chromium (Debian's `chromium`); without one the report just has no screenshot.
    """
    from processor.console.screenshot import save_queue_screenshot
    from scripts.local_aws import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    print(f"\n==> screenshot of the alert console\n    $ {python} -m processor.console "
          f"--profile {profile} --port {port}", flush=True)  # fmt: skip
    console = subprocess.Popen(
        [python, "-m", "processor.console", "--profile", profile, "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and console.poll() is None:
            try:
                with urllib.request.urlopen(url + "health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_queue_screenshot(url, path)
        print(f"    saved {path}", flush=True)
    except FraudPipelineError as exc:  # no browser here: the report goes without it
        print(f"    no screenshot: {exc}", flush=True)
    finally:
        console.terminate()
        console.wait(30)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.demo", __doc__)
    parser.add_argument(
        "--num-transactions", type=int, default=4000, help="transactions to produce"
    )
    parser.add_argument(
        "--fraud-rate", type=float, default=0.02, help="share of fraudulent transactions"
    )
    parser.add_argument("--anomaly-rate", type=float, default=0.01, help="share of broken records")
    parser.add_argument("--seed", type=int, default=7, help="producer's random seed")
    parser.add_argument(
        "--max-records-per-shard",
        type=int,
        default=250,
        help="records per shard in one micro-batch: the stream is drained in a few batches, "
        "whose progress the report shows",
    )
    parser.add_argument(
        "--reports-dir",
        default="reports",
        help="where run reports go, as <dir>/<run id>/index.html (relative to the project)",
    )
    return parser


def run_id() -> str:
    """The id (and folder name) of one demo run: its start time, UTC, e.g. 20260101-120000."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = load_settings(args.profile)
    profile = settings.profile
    run = run_id()
    report_folder = PROJECT_ROOT / args.reports_dir / run

    env = dict(os.environ)
    env.setdefault("CARD_TOKEN_KEY", DEMO_TOKEN_KEY)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env["FRAUD_PROFILE"] = profile
    # Each step logs the way this command was asked to.
    env["FRAUD_LOG_LEVEL"], env["FRAUD_LOG_FORMAT"] = args.log_level, args.log_format
    if profile == "local":
        # A demo starts from a clean slate: the emulator keeps its state in memory, so a
        # restart empties the stream, and the local lake and checkpoints go too. Otherwise a
        # second run would send the same event times again, behind the watermark of the
        # first, and every event would (correctly) become a `late` dead letter.
        local = settings.local_aws
        emulator = LocalAws(local.host, local.port, PROJECT_ROOT / local.state_dir)
        stop(emulator)
        if is_healthy(emulator.endpoint_url):
            # Not ours (another checkout's emulator): its old stream would replay old events.
            raise FraudPipelineError(
                f"another AWS emulator answers on port {local.port}; stop it "
                "(`python -m scripts.local_aws stop` in its checkout) or set "
                "FRAUD_LOCAL_AWS_PORT"
            )
        for folder in (settings.processor.lake_path, settings.processor.checkpoint_location):
            if "://" not in folder:
                shutil.rmtree(PROJECT_ROOT / folder, ignore_errors=True)
        print(f"==> local AWS emulator (moto) on {local.host}:{local.port}", flush=True)
        start(emulator)
    else:
        probe_endpoint(settings.aws)
    print("==> creating stream, alerts table and bucket", flush=True)
    for kind, name in setup_resources(settings).items():
        print(f"    {kind}: {name}")

    python = sys.executable
    if artifacts_exist(settings.model.path, settings.aws):
        print(f"\n==> model: using the one in {settings.model.path} (delete it to retrain)")
    else:
        _run(
            "train the model on generated history (no model yet)",
            [python, "-m", "ml_model.train", "--profile", profile, "--no-search"],
            env,
        )
    _run(
        "produce labelled transactions with fraud",
        [
            python, "-m", "producer.main",
            "--profile", profile,
            "--num-transactions", str(args.num_transactions),
            "--fraud-rate", str(args.fraud_rate),
            "--anomaly-rate", str(args.anomaly_rate),
            "--seed", str(args.seed),
        ],
        env,
    )  # fmt: skip
    _run(
        "process the stream until it is drained",
        [
            python, "-m", "processor.job", "--profile", profile, "--available-now",
            "--max-records-per-shard", str(args.max_records_per_shard),
        ],
        env,
    )  # fmt: skip
    # Files put in report_folder before the summary (console.png) are embedded in the report.
    _console_screenshot(python, profile, env, report_folder / "console.png")
    _run(
        "summary and run report",
        [
            python, "-m", "scripts.demo_summary", "--profile", profile,
            "--report-dir", str(report_folder), "--run-id", run,
        ],
        env,
    )  # fmt: skip
    report = report_folder / INDEX
    if not report.is_file():
        raise FraudPipelineError(f"the summary step wrote no report at {report}")
    print(f"\n==> run report: {report}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
