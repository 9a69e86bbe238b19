#!/usr/bin/env bash
# Starts the given ratings instances in the foreground; Ctrl-C stops them all, and each
# deregisters before it exits. Records each instance's pid in $RUN_DIR/ratings-N.pid so
# `make pauseRatings INSTANCE=N` can find it from another terminal. Each keeps its
# registration lease in $RUN_DIR/ratings-N.lease, so one restarted after a crash or
# `kill -9` takes its registration back at once. With ADMIN=1 (as in
# `make startRatings ADMIN=1`) each instance also serves its fault-injection admin endpoint
# (off by default; RATINGS_ADMIN_TOKEN, if set, is the token it requires).
set -euo pipefail
instances=$1
: "${BIN:?}" "${RUN_DIR:?}"
mkdir -p "$RUN_DIR"
flags=()
case ${ADMIN:-} in ''|0|false|no) ;; *) flags+=(--admin) ;; esac
pids=()
for n in $instances; do
    case $n in ''|*[!0-9]*) echo "startRatings: instance must be a number, got '$n'" >&2; exit 2;; esac
    "$BIN/ratings-service" --instance "$n" --lease-file "$RUN_DIR/ratings-$n.lease" ${flags[@]+"${flags[@]}"} &
    pid=$!
    echo "$pid" > "$RUN_DIR/ratings-$n.pid"
    pids+=("$pid")
done
stop() { kill -CONT "${pids[@]}" 2>/dev/null || true; kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap stop INT TERM
# `wait` returns when a signal arrives; wait again so every instance finishes deregistering.
wait || true
wait || true
for n in $instances; do rm -f "$RUN_DIR/ratings-$n.pid"; done
