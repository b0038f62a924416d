#!/usr/bin/env bash
# Build the iot-vehicles job jar with plain javac + jar (no Maven).
#   usage: build.sh FLINK_HOME OUT_JAR
# Compiles against FLINK_HOME/lib/*.jar (Flink 2.x, Java 17); Flink classes are NOT bundled.
set -euo pipefail
die() { echo "build.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: build.sh FLINK_HOME OUT_JAR"
FLINK_HOME=$1
OUT_JAR=$2
[ -d "$FLINK_HOME/lib" ] || die "FLINK_HOME/lib not found: $FLINK_HOME/lib (expected an unpacked Flink distribution)"
compgen -G "$FLINK_HOME/lib/flink-dist*.jar" >/dev/null || die "no flink-dist jar in $FLINK_HOME/lib"
command -v javac >/dev/null || die "javac not found (need a JDK 17+)"
command -v jar >/dev/null || die "jar not found (need a JDK 17+)"

SRC=$(cd "$(dirname "$0")" && pwd)/src/main/java
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/classes"
find "$SRC" -name '*.java' > "$WORK/sources"
javac --release 17 -nowarn -encoding UTF-8 -cp "$FLINK_HOME/lib/*" -d "$WORK/classes" @"$WORK/sources" \
  || die "javac failed"
mkdir -p "$(dirname "$OUT_JAR")"
jar --create --file "$OUT_JAR" --main-class io.khaos.jobs.IotVehiclesJob -C "$WORK/classes" . \
  || die "jar failed"
echo "built $OUT_JAR"
