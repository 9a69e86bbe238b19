#!/usr/bin/env bash
# signal-ratings.sh STOP|CONT|TERM N|all: signals ratings instances started by
# `make startRatings` (or `make run`), found through their pid files.
set -euo pipefail
signal=$1 which=$2
run_dir=${RUN_DIR:-.run}
if [ "$which" = all ]; then
    files=$(ls "$run_dir"/ratings-*.pid 2>/dev/null || true)
    [ -n "$files" ] || { echo "no ratings instance is running" >&2; exit 0; }
else
    files="$run_dir/ratings-$which.pid"
    [ -f "$files" ] || { echo "ratings instance $which is not running (no $files)" >&2; exit 1; }
fi
for f in $files; do
    pid=$(cat "$f")
    n=${f##*/ratings-}; n=${n%.pid}
    if kill -"$signal" "$pid" 2>/dev/null; then
        echo "sent SIG$signal to ratings instance $n (pid $pid)"
        if [ "$signal" = TERM ]; then kill -CONT "$pid" 2>/dev/null || true; rm -f "$f"; fi
    else
        echo "ratings instance $n (pid $pid) is gone" >&2
        rm -f "$f"
    fi
done
