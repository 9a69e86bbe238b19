#!/usr/bin/env bash
# ratings-faults.sh N JSON: sets ratings instance N's injected faults through its admin
# endpoint, PUT http://127.0.0.1:{8000+N}/admin/faults, e.g. '{"latency_ms": 1500}'.
# The endpoint exists only on instances started with it on (`make startRatings ADMIN=1`);
# when RATINGS_ADMIN_TOKEN is set it is sent as the bearer token. With TLS_DIR set (the
# instances started with TLS=1) it is https://, trusting the CA in $TLS_DIR/ca.pem.
set -euo pipefail
n=${1:-} body=${2:-}
case $n in ''|*[!0-9]*) echo "ratings-faults: instance must be a number, got '$n'" >&2; exit 2;; esac
command -v curl >/dev/null || { echo "ratings-faults: needs curl (apt-get install curl)" >&2; exit 2; }
url="http://127.0.0.1:$((8000 + n))/admin/faults"
tls=()
if [ -n "${TLS_DIR:-}" ]; then
    url="https://127.0.0.1:$((8000 + n))/admin/faults"
    tls=(--cacert "$TLS_DIR/ca.pem")
fi
auth=()
if [ -n "${RATINGS_ADMIN_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $RATINGS_ADMIN_TOKEN"); fi
if ! answer=$(curl -sS --max-time 5 -w '\n%{http_code}' -X PUT ${tls[@]+"${tls[@]}"} ${auth[@]+"${auth[@]}"} \
        -H 'content-type: application/json' --data "$body" "$url"); then
    echo "ratings instance $n is not reachable at $url" >&2
    exit 1
fi
status=${answer##*$'\n'} reply=${answer%$'\n'*}
case $status in
    200) echo "ratings instance $n faults now: $reply" ;;
    404) echo "ratings instance $n has no admin endpoint: start it with 'make startRatings ADMIN=1'" >&2; exit 1 ;;
    401) echo "ratings instance $n wants its admin token: set RATINGS_ADMIN_TOKEN" >&2; exit 1 ;;
    *)   echo "ratings instance $n refused $body: $status $reply" >&2; exit 1 ;;
esac
