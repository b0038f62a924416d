#!/bin/bash
# kill_jvm.sh RUN_DIR COMPONENT FIRE_AT
# SIGKILL the component's JVM (PID from RUN_DIR/COMPONENT.pid) at FIRE_AT (epoch seconds),
# check that the process really was a JVM and really died, and print one JSON line.
set -u
run=$1 component=$2 fire_at=$3
pidfile="$run/$component.pid"
[ -f "$pidfile" ] || { echo "no $component runs on $(hostname): $pidfile is missing" >&2; exit 1; }
pid=$(cat "$pidfile")
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = java ] || { echo "$component PID $pid on $(hostname) is not a live JVM" >&2; exit 1; }
delay=$(awk -v a="$fire_at" -v b="$(date +%s.%N)" 'BEGIN { d = a - b; printf "%.3f", (d > 0 ? d : 0) }')
sleep "$delay"
kill -KILL "$pid"
killed_at=$(date +%s.%N)
dead=false
for _ in $(seq 100); do
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
  if [ -z "$state" ] || [ "$state" = Z ]; then dead=true; break; fi
  sleep 0.05
done
printf '{"host": "%s", "component": "%s", "pid": %s, "fire_at": %s, "killed_at": %s, "dead": %s}\n' \
  "$(hostname)" "$component" "$pid" "$fire_at" "$killed_at" "$dead"
$dead || { echo "PID $pid survived SIGKILL" >&2; exit 1; }
