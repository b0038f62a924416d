#!/bin/bash
# kill_jvm.sh RUN_DIR COMPONENT FIRE_AT USER
# SIGKILL the component's JVM (PID from RUN_DIR/COMPONENT.pid) at FIRE_AT (epoch seconds),
# check that the process really was a JVM and really died, and print one JSON line.
# The pid file and the kill are USER's (the service user, who owns RUN_DIR): root reads no file in that
# user's directory and can only be made to signal that user's own processes.
set -u
run=$1 component=$2 fire_at=$3 user=$4
as_user() {
  if [ "$user" = root ]; then "$@"; else setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --no-new-privs -- "$@"; fi
}
pidfile="$run/$component.pid"
pid=$(as_user cat "$pidfile" 2>/dev/null) || { echo "no $component runs on $(hostname): cannot read $pidfile as $user" >&2; exit 1; }
case $pid in '' | *[!0-9]*) echo "$pidfile on $(hostname) holds no PID" >&2; exit 1 ;; esac
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = java ] || { echo "$component PID $pid on $(hostname) is not a live JVM" >&2; exit 1; }
delay=$(awk -v a="$fire_at" -v b="$(date +%s.%N)" 'BEGIN { d = a - b; printf "%.3f", (d > 0 ? d : 0) }')
sleep "$delay"
as_user kill -KILL "$pid"
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
