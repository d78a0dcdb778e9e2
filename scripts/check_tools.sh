#!/usr/bin/env bash
# Checks the tools a fresh machine needs before .venv is built; says what to install if one is missing.
set -euo pipefail
python_bin="${1:-python3}"

if ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "error: $python_bin not found. Install Python 3.11 or newer (https://www.python.org/downloads/)." >&2
  exit 1
fi
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: $("$python_bin" --version 2>&1) is too old; Python 3.11 or newer is required (set PYTHON=python3.11)." >&2
  exit 1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "error: java not found. Install a Java 17+ runtime, e.g. 'apt-get install openjdk-17-jre-headless' or Temurin 17." >&2
  exit 1
fi
java_major="$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')"
if [[ -z "$java_major" || "$java_major" -lt 17 ]]; then
  echo "error: Java $java_major found; Spark 4.2 needs Java 17 or newer. Install openjdk-17 (or newer) and put it first on PATH / set JAVA_HOME." >&2
  exit 1
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "error: mvn not found. Maven copies the Delta and hadoop-aws JARs from Maven Central: 'apt-get install maven'." >&2
  exit 1
fi
