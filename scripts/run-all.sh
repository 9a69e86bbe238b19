#!/usr/bin/env bash
# Runs the whole system in one terminal: the registry, ratings instances 1..3 and the
# market, each line prefixed with the process it came from. Ctrl-C stops everything
# cleanly (instances deregister, the market and registry shut down gracefully).
# With TLS_DIR set (`make run TLS=1`), every program serves HTTPS with the certificate in
# it and trusts the CA in it ($TLS_DIR/ca.pem) for its calls.
set -euo pipefail
: "${BIN:?}" "${RUN_DIR:?}"
mkdir -p "$RUN_DIR"
pids=()
scheme=http serve=() clients=()
if [ -n "${TLS_DIR:-}" ]; then
    scheme=https
    serve=(--tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key")
    clients=(--ca-file "$TLS_DIR/ca.pem" --registry "https://127.0.0.1:8500")
fi

# start NAME CMD...: runs CMD with its output prefixed by [NAME]. The prefixer ignores
# Ctrl-C so it can print the services' last lines as they shut down.
start() {
    local name=$1; shift
    "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
    pids+=("$!")
    echo $! > "$RUN_DIR/$name.pid"
}

# running PID...: true while any of them runs (a process that has exited stays a zombie
# until the `wait` below reaps it, so `kill -0` would still find it).
running() {
    local pid state
    for pid in "$@"; do
        state=$(ps -o stat= -p "$pid" 2>/dev/null) && [[ $state != Z* ]] && return 0
    done
    return 1
}

# Stops the market and the instances first (SIGCONT first, for a paused one), waits up to
# 10 s for them, so that each instance's deregistration reaches a registry still running,
# then stops the registry.
stop() {
    trap - INT TERM
    echo "[run] stopping..."
    kill -CONT "${pids[@]}" 2>/dev/null || true
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        running "${pids[@]}" || break
        sleep 0.1
    done
    kill -TERM "$registry" 2>/dev/null || true
}
trap stop INT TERM

# The registry runs in a session of its own, so the terminal's Ctrl-C reaches only the
# processes that register with it; stop() ends it last.
setsid "$BIN/registry" ${serve[@]+"${serve[@]}"} > >(trap '' INT TERM; exec sed -u "s/^/[registry] /") 2>&1 &
registry=$!
echo "$registry" > "$RUN_DIR/registry.pid"
# Wait for the registry to answer before starting what registers with it.
for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8500) 2>/dev/null && break
    sleep 0.1
done
for n in 1 2 3; do
    start "ratings-$n" "$BIN/ratings-service" --instance "$n" --lease-file "$RUN_DIR/ratings-$n.lease" \
        ${serve[@]+"${serve[@]}"} ${clients[@]+"${clients[@]}"}
done
start market "$BIN/market" ${serve[@]+"${serve[@]}"} ${clients[@]+"${clients[@]}"}
echo "[run] market on $scheme://127.0.0.1:5000 — Ctrl-C stops everything"
if [ -n "${TLS_DIR:-}" ]; then
    echo "[run] TLS with a throwaway CA: trust $TLS_DIR/ca.pem (e.g. curl --cacert $TLS_DIR/ca.pem https://127.0.0.1:5000/)"
fi
echo "[run] in another terminal: make pauseRatings INSTANCE=1, make resumeRatings INSTANCE=1"
wait || true
wait || true
rm -f "$RUN_DIR"/*.pid
