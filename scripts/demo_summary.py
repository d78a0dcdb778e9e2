"""Summary printed at the end of `make demo`: what the processor wrote to the lake.

python -m scripts.demo_summary [--profile local]
"""

from __future__ import annotations

import argparse
import os
import sys

from config.settings import load_config
from processor.sinks import TABLES, table_path
from processor.spark_session import build_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo_summary", description=__doc__)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = load_config(args.profile)
    spark = build_spark(settings, app_name="demo-summary")
    spark.sparkContext.setLogLevel("ERROR")
    lake = settings.processor.lake_path
    print(f"\nDelta lake: {os.path.abspath(lake) if '://' not in lake else lake}")
    for table in TABLES:
        path = table_path(lake, table)
        try:
            frame = spark.read.format("delta").load(path)
        except Exception:  # noqa: BLE001 - a table the run never wrote
            print(f"  {table:<13} (empty)")
            continue
        print(f"  {table:<13} {frame.count():>7} rows   {path}")
        if table == "transactions":
            fraud = frame.where("label_is_fraud").groupBy("label_fraud_scenario").count()
            for row in fraud.orderBy("label_fraud_scenario").collect():
                print(f"      labelled fraud  {row['label_fraud_scenario']:<22} {row['count']:>5}")
            print(f"      distinct cards  {frame.select('card_token').distinct().count():>5}")
        if table == "dead_letters":
            for row in frame.groupBy("reason").count().orderBy("reason").collect():
                print(f"      {row['reason']:<24} {row['count']:>5}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
