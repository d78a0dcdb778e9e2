#!/usr/bin/env bash
# Copies the JVM dependencies named in infrastructure/jars/pom.xml into .jars/.
# Maven (not Spark's Ivy) does the download because it honours the machine's Maven settings
# (mirrors, proxies); see docs/decisions/0002-delta-4.4.0.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .jars
mkdir -p .jars
mvn -q -B -f infrastructure/jars/pom.xml dependency:copy-dependencies \
  -DoutputDirectory="$PWD/.jars" -DincludeScope=runtime
ls .jars/*.jar >/dev/null
touch .jars/.complete
echo "JARs ready in .jars/: $(ls .jars/*.jar | xargs -n1 basename | tr '\n' ' ')"
