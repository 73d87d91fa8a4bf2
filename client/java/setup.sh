#!/usr/bin/env bash
# Builds the Java client (Maven): target/eventbus-examples.jar, one jar with
# every dependency. Idempotent: rebuilds only when the jar is missing or the
# sources (pom.xml, src/, the repo's proto/eventbus) changed since it was built.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup.sh: $tool is required (Java 17 or newer and Maven 3.6.3 or newer), e.g. apt-get install openjdk-17-jdk-headless maven" >&2
    exit 1
  fi
done
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
if [ "${java_major%%.*}" -lt 17 ] 2>/dev/null || [ -z "$java_major" ]; then
  echo "setup.sh: Java 17 or newer is required, found ${java_major:-unknown}" >&2
  exit 1
fi

jar="target/eventbus-examples.jar"
stamp="target/.eventbus-setup-stamp"
want="$( (cat pom.xml; find src ../../proto/eventbus -type f | LC_ALL=C sort | xargs cat) | cksum)"
if [ -f "$jar" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup.sh: building the Java client (mvn package)" >&2
# Maven 3.8 prints stray colour resets even in batch mode: strip them
# (pipefail keeps Maven's exit status).
if ! mvn -B -q -Dstyle.color=never package -DskipTests 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
  echo "setup.sh: Maven build failed in $here" >&2
  exit 1
fi
printf '%s\n' "$want" > "$stamp"
