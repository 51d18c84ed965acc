#!/usr/bin/env bash
# Interop checks against real gRPC implementations (run by .ci/run after `swift test`):
#   1. the Python grpcio client against our echo service (every call kind, errors, a 1 MiB
#      message, INTEROP_CALLS sequential calls on one connection with no GOAWAY/reconnect);
#   2. the real etcdctl (Debian etcd-client) against swift-etcd: alarms, -w protobuf, a backup
#      (etcdctl snapshot save) checked, restored and served again with swift-etcdutl, hashkv and
#      the status table; then the etcdctl-diff scenarios (the same etcdctl commands against the
#      real etcd and swift-etcd must print the same);
#   2c. the same over TLS as kubeadm runs etcd (scripts/with-tls.sh, one throwaway PKI for
#      both servers): the scenarios, endpoint health and status, member list, clients without
#      a trusted certificate refused;
#   3. our Swift client against the real etcd (Debian etcd-server): INTEROP_CALLS calls of
#      Maintenance.Status on one connection without being dropped;
#   4. the Go clientv3 library (Debian golang-etcd-server-dev, GOPATH mode) against the real
#      etcd and swift-etcd: large values, responses and watch catch-ups past 4 MiB, refused
#      oversized requests, then INTEROP_LARGE_MIB (default 2100) MiB read on one connection.
#   4b. scripts/goclient/src/abuse: raw HTTP/2 frames from Go beside a clientv3, against the
#      real etcd and swift-etcd (--max-concurrent-streams 8, 2 s keep-alive pings): streams past
#      the limit, a ping flood, unanswered pings, 2000 idle connections, a watch stream that
#      never reads, connection churn, a preface sent a byte at a time (memory and descriptors
#      read from /proc, printed as FIGURE lines).
#   4c. scripts/fuzz.sh: INTEROP_FUZZ_SECONDS (60) of mutated requests for every RPC and random
#      HTTP/2 frame sequences against swift-etcd, then a restart with the same keys.
#   5. scripts/stream_endings.py: how LeaseKeepAlive and Watch streams end (half-close, cancel,
#      deadline, bad input, leader lost, server stop) against the real etcd and swift-etcd.
#   6. scripts/auth_jwt.py: JWT tokens issued by each server verified with PyJWT, tokens PyJWT
#      signs accepted, foreign, expired and stale ones refused, against both servers.
#   7. curl against both servers: /health, 405 and 404, /version, over plaintext and over TLS
#      (ALPN http/1.1) on the gRPC port; swift-etcd's /readyz; gRPC still served beside.
#   8. scripts/goclient/src/authclient: Go clientv3 as alice across an auth change (unary calls,
#      a watch stream opened before it and a watcher created after it, a kept-alive lease).
#   9. the /v3 JSON gateway: scripts/gateway_curl.py (the same curl requests against etcd 3.4's
#      gateway and swift-etcd, compared once the 3.4/3.6 differences are normalised), the
#      functional tests of etcd3gw (PyPI) against swift-etcd, and a watch over a WebSocket.
#  10. scripts/coordination_check.sh against the real etcd and swift-etcd: etcdctl lock (a
#      holder killed -9, a waiter taking over), etcdctl elect and elect -l, the gateway's lock
#      and election paths.
#  11. moving from etcd: the real etcd written with etcdctl (puts, a value larger than a page, a
#      deletion, a lease, a compaction, auth on), its `etcdctl snapshot save` restored by
#      swift-etcdutl; the restored member's answers compared with etcd's at four revisions.
#  12. logs at --log-level debug: the `request stats` lines of the same etcdctl calls against
#      the real etcd and swift-etcd compared; swift-etcd's log file rotated and gzipped.
# Needs: etcd, etcdctl, go, curl, and a Python with grpcio, pyjwt, etcd3gw, oslotest and
# websocket-client ($PYTHON, default .venv/bin/python).
# Uses the binaries of `swift build` (debug unless SWIFT_BUILD_FLAGS says otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

calls=${INTEROP_CALLS:-100000}
python=${PYTHON:-.venv/bin/python}
# shellcheck disable=SC2086
bin=$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)
work=$(mktemp -d)
pids=()
passed=0
failed=0

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

report() { # report NAME STATUS [DETAIL]
  if [ "$2" = 0 ]; then
    passed=$((passed + 1)); echo "PASS $1"
  else
    failed=$((failed + 1)); echo "FAIL $1${3:+: $3}"
  fi
}

# against_both NAME WHAT SECONDS COMMAND...: starts the real etcd, then swift-etcd, as a
# one-member cluster and runs COMMAND with its endpoint (host:port) as last argument; shows
# what it prints other than PASS lines (and the shell's notes of killed jobs) and reports WHAT
# against each server.
against_both() {
  local name=$1 what=$2 seconds=$3 server client_port peer_port binary status
  shift 3
  for server in etcd swift-etcd; do
    client_port=$(free_port)
    peer_port=$(free_port)
    binary=$([ "$server" = etcd ] && command -v etcd || echo "$bin/swift-etcd")
    start_member "$binary" "$name" "$work/$name-$server" "$client_port" "$peer_port" "$work/$name-$server.log"
    pids+=($!)
    if wait_for_port "$client_port" 30; then
      set +e
      timeout "$seconds" "$@" "127.0.0.1:$client_port" >"$work/$name-$server.out" 2>&1
      status=$?
      set -e
      grep -v -E '^PASS|Killed' "$work/$name-$server.out" || true
      report "$what against $server ($(grep -c '^PASS' "$work/$name-$server.out") checks passed)" "$status" \
        "$(grep FAIL "$work/$name-$server.out" | head -3)"
    else
      report "$server started for: $what" 1
    fi
    kill "${pids[-1]}" 2>/dev/null || true
  done
}

echo "== 1. Python grpcio client -> swift grpc-bench echo service"
port=$(free_port)
"$bin/grpc-bench" serve --port "$port" >"$work/echo.log" 2>&1 &
pids+=($!)
if wait_for_port "$port" 30; then
  set +e
  timeout 900 "$python" scripts/interop_grpcio.py "127.0.0.1:$port" "$calls" | tee "$work/grpcio.out"
  status=${PIPESTATUS[0]}
  set -e
  report "grpcio client against our server" "$status" "$(grep FAIL "$work/grpcio.out" | head -3)"
else
  report "grpc-bench serve started" 1 "$(cat "$work/echo.log")"
fi

echo "== 2. real etcdctl -> swift-etcd: alarms, output formats, backups and maintenance"
port=$(free_port)
peer=$(free_port)
"$bin/swift-etcd" --name interop --initial-cluster "interop=http://127.0.0.1:$peer" --data-dir "$work/swift-etcd.data" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  >"$work/swift-etcd.log" 2>&1 &
pids+=($!)
if wait_for_port "$port" 30; then
  output=$(ETCDCTL_API=3 timeout 20 etcdctl --endpoints "127.0.0.1:$port" alarm list 2>&1)
  [ -z "$output" ]; report "etcdctl alarm list: no alarm on a fresh member" $? "$output"
  kill -0 "${pids[-1]}" 2>/dev/null
  report "swift-etcd still running after every command" $?
  # -w protobuf prints the raw RangeResponse: decode it with our own protos.
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" put pb "protobuf output" >/dev/null
  decoded=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get pb -w protobuf |
    protoc -I Protos --decode=etcdserverpb.RangeResponse etcdserverpb/rpc.proto 2>&1 || true)
  grep -q 'value: "protobuf output"' <<<"$decoded" && grep -q 'count: 1' <<<"$decoded"
  report "etcdctl get -w protobuf decodes as etcdserverpb.RangeResponse" $? "$decoded"

  # A backup with the real etcdctl, inspected and restored with swift-etcdutl, served again.
  # (Checks report their failures instead of ending the script.)
  set +e
  ctl() { ETCDCTL_API=3 etcdctl --command-timeout=10s "$@"; }
  for i in $(seq 1 20); do ctl --endpoints "127.0.0.1:$port" put "backup/$i" "value $i" >/dev/null; done
  revision=$(ctl --endpoints "127.0.0.1:$port" get backup/1 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
  saved=$(ctl --endpoints "127.0.0.1:$port" snapshot save "$work/backup.db" 2>&1)
  grep -q "Snapshot saved at $work/backup.db" <<<"$saved"; report "etcdctl snapshot save writes a backup" $? "$saved"
  status_json=$("$bin/swift-etcdutl" snapshot status "$work/backup.db" -w json 2>&1)
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["revision"]==int(sys.argv[2]) and s["version"]=="3.6.0", s' \
    "$status_json" "$revision" 2>/dev/null
  report "swift-etcdutl snapshot status reads it (revision $revision)" $? "$status_json"
  restored_port=$(free_port)
  restored_peer=$(free_port)
  restore_out=$("$bin/swift-etcdutl" snapshot restore "$work/backup.db" --name restored --data-dir "$work/restored.data" \
    --initial-cluster "restored=http://127.0.0.1:$restored_peer" --initial-advertise-peer-urls "http://127.0.0.1:$restored_peer" 2>&1)
  report "swift-etcdutl snapshot restore" $? "$restore_out"
  start_member "$bin/swift-etcd" restored "$work/restored.data" "$restored_port" "$restored_peer" "$work/restored.log"
  pids+=($!)
  if wait_for_port "$restored_port" 30; then
    original=$(ctl --endpoints "127.0.0.1:$port" get backup/ --prefix --rev "$revision" -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"])')
    copy=$(ctl --endpoints "127.0.0.1:$restored_port" get backup/ --prefix -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"])')
    [ "$original" = "$copy" ]; report "the restored member serves the backup's keys and revisions" $? "$copy"
    hash_original=$(ctl --endpoints "127.0.0.1:$port" endpoint hashkv --rev "$revision" | sed 's/.*, //')
    hash_copy=$(ctl --endpoints "127.0.0.1:$restored_port" endpoint hashkv --rev "$revision" | sed 's/.*, //')
    [ -n "$hash_original" ] && [ "$hash_original" = "$hash_copy" ]
    report "etcdctl endpoint hashkv agrees between the original and the restored member" $? "$hash_original vs $hash_copy"
  else
    report "restored swift-etcd started" 1 "$(tail -5 "$work/restored.log")"
  fi
  table=$(ctl --endpoints "127.0.0.1:$port" endpoint status -w table)
  grep -qE '^\| 127\.0\.0\.1:[0-9]+ \| [0-9a-f]+ \| +3\.6\.0 \| +[0-9.]+ kB \| +true \| +false \|' <<<"$table"
  report "etcdctl endpoint status -w table" $? "$table"
  set -e
else
  report "swift-etcd started" 1 "$(cat "$work/swift-etcd.log")"
fi

echo "== 2b. etcdctl-diff: the same etcdctl commands against the real etcd and swift-etcd"
shared=${SHARED_DIR:-../shared}
scenarios=()
for name in kv txn history errors watch lease; do scenarios+=("$shared/tools/scenarios/$name.txt"); done
scenarios+=(scripts/scenarios/*.txt)
set +e
timeout 900 python3 "$shared/tools/etcdctl-diff" --candidate "$bin/swift-etcd" "${scenarios[@]}" >"$work/diff.out" 2>&1
status=$?
set -e
grep -vE '^PASS' "$work/diff.out" || true
report "etcdctl-diff: $(tail -1 "$work/diff.out")" "$status"

echo "== 2c. over TLS as kubeadm runs etcd: the scenarios, endpoint checks, refused clients"
"$PWD/scripts/make-test-certs.sh" "$work/pki" >/dev/null
for server in etcd swift-etcd; do
  real=$([ "$server" = etcd ] && command -v etcd || echo "$bin/swift-etcd")
  printf '#!/bin/sh\nREAL_BINARY=%s TLS_DIR=%s exec %s "$@"\n' "$real" "$work/pki" "$PWD/scripts/with-tls.sh" >"$work/$server-tls"
  chmod +x "$work/$server-tls"
done
tls_scenarios=()
for name in kv txn watch lease; do tls_scenarios+=("$shared/tools/scenarios/$name.txt"); done
set +e
ETCDCTL_CACERT="$work/pki/ca.pem" ETCDCTL_CERT="$work/pki/client.pem" ETCDCTL_KEY="$work/pki/client-key.pem" \
  timeout 900 python3 "$shared/tools/etcdctl-diff" --candidate "$work/swift-etcd-tls" --reference "$work/etcd-tls" \
  "${tls_scenarios[@]}" >"$work/diff-tls.out" 2>&1
status=$?
set -e
grep -vE '^PASS' "$work/diff-tls.out" || true
report "etcdctl-diff over TLS: $(tail -1 "$work/diff-tls.out")" "$status"
for server in etcd swift-etcd; do
  client_port=$(free_port)
  peer_port=$(free_port)
  # The wrapper turns these http:// URLs into https:// ones.
  start_member "$work/$server-tls" tls "$work/tls-$server.data" "$client_port" "$peer_port" "$work/tls-$server.log"
  pids+=($!)
  if wait_for_port "$client_port" 30; then
    ctl=(etcdctl --endpoints "https://127.0.0.1:$client_port" --cacert "$work/pki/ca.pem" --dial-timeout 3s --command-timeout 5s)
    set +e
    health=$("${ctl[@]}" --cert "$work/pki/client.pem" --key "$work/pki/client-key.pem" endpoint health 2>&1)
    code=$?
    status_out=$("${ctl[@]}" --cert "$work/pki/client.pem" --key "$work/pki/client-key.pem" endpoint status 2>&1)
    [ $? = 0 ] || code=1
    set -e
    echo "$health" | grep -q "is healthy" || code=1
    report "etcdctl endpoint health and status over TLS against $server" "$code" "$health $status_out"
    # Member IDs and ports differ between the two servers (etcdctl prints IDs without leading
    # zeros, which etcdctl-diff's normalising misses): compare what is left.
    for format in simple table; do
      "${ctl[@]}" --cert "$work/pki/client.pem" --key "$work/pki/client-key.pem" member list -w "$format" 2>&1 |
        sed -E 's/^([|] )?[0-9a-f]{1,16}( [|]|,)/\1ID\2/; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' | tr -s ' -' >"$work/members-$format-$server.out"
    done
    for refused in "no client certificate|" \
      "a certificate from another CA|--cert $work/pki/other-client.pem --key $work/pki/other-client-key.pem"; do
      name=${refused%%|*}
      set +e
      # shellcheck disable=SC2086
      out=$(timeout 20 "${ctl[@]}" ${refused#*|} get a 2>&1)
      code=$?
      set -e
      [ "$code" != 0 ] && code=0 || code=1
      report "$server refuses a client with $name" "$code" "$out"
    done
  else
    report "$server started with TLS" 1 "$(tail -5 "$work/tls-$server.log")"
  fi
  kill "${pids[-1]}" 2>/dev/null || true
done

for format in simple table; do
  if grep -q started "$work/members-$format-etcd.out" &&
    diff "$work/members-$format-etcd.out" "$work/members-$format-swift-etcd.out" >"$work/members-$format.diff"; then
    report "etcdctl member list -w $format over TLS: the same for both servers" 0
  else
    report "etcdctl member list -w $format over TLS: the same for both servers" 1 "$(cat "$work/members-$format.diff")"
  fi
done

echo "== 3. Swift client -> real etcd $(etcd --version | head -1)"
client_port=$(free_port)
peer_port=$(free_port)
start_etcd interop "$work/etcd.data" "$client_port" "$peer_port" "$work/etcd.log"
pids+=($!)
if wait_for_port "$client_port" 30; then
  set +e
  result=$(timeout 900 "$bin/grpc-bench" load --target "127.0.0.1:$client_port" \
    --method /etcdserverpb.Maintenance/Status --total "$calls" --concurrency 1 --warmup 0 2>&1)
  code=$?
  set -e
  echo "$result"
  report "$calls Maintenance.Status calls to etcd on one connection, none dropped" "$code" "$result"
  # The benchmark tool against the real etcd: every workload swift-etcd cannot serve yet too.
  for workload in "put --total 500 --clients 8 --conns 2 --key-space-size 100" "range foo --total 200" \
    "txn-put --total 200 --txn-ops 2 --key-space-size 10" "lease-keepalive --total 200 --clients 2" \
    "watch --streams 2 --watch-per-stream 10 --put-total 50"; do
    set +e
    # shellcheck disable=SC2086
    out=$(timeout 120 "$bin/swift-etcd-benchmark" $workload --endpoints "127.0.0.1:$client_port" 2>&1)
    code=$?
    set -e
    [ "$code" = 0 ] && echo "$out" | grep -q '^RESULT .* errors=0 ' || code=1
    report "swift-etcd-benchmark ${workload%% *} against etcd" "$code" "$(echo "$out" | grep -E 'RESULT|Error|error' | head -3)"
  done
else
  report "etcd started" 1 "$(cat "$work/etcd.log")"
fi

echo "== 4. Go clientv3 (default options) -> large messages, real etcd then swift-etcd"
large_mib=${INTEROP_LARGE_MIB:-2100}
if (cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/largemessages" largemessages) >"$work/gobuild.log" 2>&1; then
  for server in etcd swift-etcd; do
    client_port=$(free_port)
    peer_port=$(free_port)
    binary=$([ "$server" = etcd ] && echo etcd || echo "$bin/swift-etcd")
    start_member "$binary" large "$work/large-$server.data" "$client_port" "$peer_port" "$work/large-$server.log"
    pids+=($!)
    if wait_for_port "$client_port" 30; then
      set +e
      timeout 600 "$work/largemessages" "127.0.0.1:$client_port" "$large_mib" 2>/dev/null | tee "$work/large-$server.out"
      status=${PIPESTATUS[0]}
      set -e
      report "Go clientv3 large messages against $server" "$status" "$(grep FAIL "$work/large-$server.out" | head -3)"
    else
      report "$server started for the large-message checks" 1
    fi
    kill "${pids[-1]}" 2>/dev/null || true
  done
else
  report "the Go clientv3 program builds" 1 "$(tail -5 "$work/gobuild.log")"
fi

echo "== 4b. abusive clients (raw HTTP/2 frames from Go beside clientv3), real etcd then swift-etcd"
if (cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/abuse" abuse) >"$work/gobuild-abuse.log" 2>&1; then
  for server in etcd swift-etcd; do
    client_port=$(free_port)
    peer_port=$(free_port)
    binary=$([ "$server" = etcd ] && echo etcd || echo "$bin/swift-etcd")
    start_member "$binary" abuse "$work/abuse-$server.data" "$client_port" "$peer_port" "$work/abuse-$server.log" \
      --max-concurrent-streams 8 --grpc-keepalive-interval 2s --grpc-keepalive-timeout 1s
    pids+=($!)
    if wait_for_port "$client_port" 30; then
      set +e
      timeout 600 "$work/abuse" "127.0.0.1:$client_port" "${pids[-1]}" 2000 \
        "$([ "$server" = etcd ] && echo reference || echo strict)" 2>/dev/null | tee "$work/abuse-$server.out"
      status=${PIPESTATUS[0]}
      set -e
      report "abusive clients against $server" "$status" "$(grep FAIL "$work/abuse-$server.out" | head -3)"
    else
      report "$server started for the abusive-client checks" 1
    fi
    kill "${pids[-1]}" 2>/dev/null || true
  done
else
  report "the Go abuse program builds" 1 "$(tail -5 "$work/gobuild-abuse.log")"
fi

echo "== 4c. fuzzing: mutated requests for every RPC and random HTTP/2 frames (scripts/fuzz.sh, ${INTEROP_FUZZ_SECONDS:-60} s)"
set +e
timeout 600 bash scripts/fuzz.sh "${INTEROP_FUZZ_SECONDS:-60}" >"$work/fuzz.out" 2>&1
status=$?
set -e
grep -E '^(fuzzing|FIGURE|PASS|FAIL|PROBLEM|crasher)' "$work/fuzz.out" || true
report "fuzzing swift-etcd" "$status" "$(grep -E 'FAIL|PROBLEM' "$work/fuzz.out" | head -3)"

echo "== 5. stream endings: the same streaming cases against the real etcd and swift-etcd (Python grpcio)"
set +e
timeout 900 "$python" scripts/stream_endings.py --etcd "$(command -v etcd)" --swift-etcd "$bin/swift-etcd" >"$work/endings.out" 2>&1
status=$?
set -e
grep -vE '^PASS' "$work/endings.out" || true
report "stream endings: $(tail -1 "$work/endings.out")" "$status"

echo "== 6. JWT auth tokens checked with PyJWT, against the real etcd and swift-etcd"
set +e
timeout 300 "$python" scripts/auth_jwt.py --etcd "$(command -v etcd)" --swift-etcd "$bin/swift-etcd" >"$work/jwt.out" 2>&1
status=$?
set -e
grep -vE '^PASS' "$work/jwt.out" || true
report "JWT tokens: $(tail -1 "$work/jwt.out")" "$status"

echo "== 7. curl: HTTP/1.1 beside gRPC on the client port (plaintext, and TLS with ALPN http/1.1)"
# What both servers answer alike (etcd 3.4 has no `reason` in /health and no /livez or /readyz:
# docs/HTTP.md); then swift-etcd's 3.6 endpoints.
for server in etcd swift-etcd; do
  for scheme in http https; do
    client_port=$(free_port)
    peer_port=$(free_port)
    binary=$([ "$server" = etcd ] && command -v etcd || echo "$bin/swift-etcd")
    curl_tls=()
    etcdctl_tls=()
    if [ "$scheme" = https ]; then
      etcdctl_tls=(--cacert "$work/pki/ca.pem" --cert "$work/pki/client.pem" --key "$work/pki/client-key.pem")
      binary="$work/$server-tls"
      curl_tls=(--cacert "$work/pki/ca.pem" --cert "$work/pki/client.pem" --key "$work/pki/client-key.pem")
    fi
    start_member "$binary" curl "$work/curl-$server-$scheme" "$client_port" "$peer_port" "$work/curl-$server-$scheme.log"
    pids+=($!)
    base="$scheme://127.0.0.1:$client_port"
    ok=1
    for _ in $(seq 1 100); do curl -s "${curl_tls[@]}" "$base/health" 2>/dev/null | grep -q '"health":"true"' && { ok=0; break; }; sleep 0.1; done
    report "curl $scheme /health answers healthy ($server)" "$ok" "$(curl -s -i "${curl_tls[@]}" "$base/health" 2>&1 | head -5)"
    answer=$(curl -s -o /dev/null -w '%{http_code} %header{allow}' -X POST "${curl_tls[@]}" "$base/health")
    [ "$answer" = "405 GET" ]; report "curl $scheme POST /health -> 405, Allow: GET ($server)" $? "$answer"
    answer=$(curl -s -o /dev/null -w '%{http_code}' "${curl_tls[@]}" "$base/nothing")
    [ "$answer" = 404 ]; report "curl $scheme unknown path -> 404 ($server)" $? "$answer"
    curl -s "${curl_tls[@]}" "$base/version" | grep -q '"etcdserver":"3\.'; report "curl $scheme /version ($server)" $?
    ETCDCTL_API=3 etcdctl --endpoints "$base" "${etcdctl_tls[@]}" put metrics-check 1 >/dev/null 2>&1 || true
    curl -s "${curl_tls[@]}" "$base/metrics" >"$work/metrics-$server-$scheme.txt"
    if [ "$server" = swift-etcd ]; then
      answer=$(curl -s "${curl_tls[@]}" "$base/readyz?verbose")
      [ "$answer" = "$(printf '[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok')" ]
      report "curl $scheme /readyz?verbose (swift-etcd)" $? "$answer"
      ETCDCTL_API=3 etcdctl --endpoints "$base" "${etcdctl_tls[@]}" put curl-check yes >/dev/null
      report "etcdctl $scheme on the same port still works (swift-etcd)" $?
    fi
    kill "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
  done
done

# promtool: our /metrics must parse, and may only draw the lint findings etcd's own names draw
# (etcd exports gauges named *_total and counters without it; dashboards need those names).
if command -v promtool >/dev/null; then
  for server in etcd swift-etcd; do
    set +e
    promtool check metrics <"$work/metrics-$server-http.txt" >"$work/promtool-$server.out" 2>&1
    echo "$?" >"$work/promtool-$server.status"
    set -e
  done
  ours=$(cat "$work/promtool-swift-etcd.status")
  extra=$(awk '{print $1}' "$work/promtool-swift-etcd.out" | sort -u | comm -23 - <(awk '{print $1}' "$work/promtool-etcd.out" | sort -u))
  [ "$ours" != 1 ] && [ -z "$extra" ] && grep -q '^etcd_server_has_leader 1' "$work/metrics-swift-etcd-http.txt" \
    && grep -q 'grpc_server_handled_total{.*grpc_method="Put",grpc_code="OK"}' "$work/metrics-swift-etcd-https.txt"
  report "promtool check metrics: parses; lint findings only on etcd's own names (exit $ours)" $? "$extra $(head -5 "$work/promtool-swift-etcd.out")"
else
  report "promtool installed (Debian's prometheus package)" 1
fi

echo "== 8. Go clientv3 with a user and password across an auth change, real etcd then swift-etcd"
if (cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/authclient" authclient) >"$work/gobuild-auth.log" 2>&1; then
  against_both auth "Go clientv3 auth workflow" 180 "$work/authclient"
else
  report "the Go clientv3 auth program builds" 1 "$(tail -5 "$work/gobuild-auth.log")"
fi

echo "== 9. the /v3 JSON gateway: curl against the real etcd and swift-etcd; etcd3gw's own tests; a WebSocket watch"
set +e
timeout 600 "$python" scripts/gateway_curl.py --swift-etcd "$bin/swift-etcd" >"$work/gateway-curl.out" 2>&1
status=$?
set -e
grep -v '^PASS' "$work/gateway-curl.out" || true
report "gateway curl cases match etcd's ($(tail -1 "$work/gateway-curl.out"))" "$status"
# etcd3gw (PyPI: the OpenStack client that speaks only the JSON gateway) runs its own
# functional tests against a fresh swift-etcd.
client_port=$(free_port)
peer_port=$(free_port)
start_member "$bin/swift-etcd" gateway "$work/gateway-swift-etcd" "$client_port" "$peer_port" "$work/gateway-swift-etcd.log"
pids+=($!)
if wait_for_port "$client_port" 30; then
  set +e
  TOOZ_TEST_HTTP_URL="http://localhost:$client_port" TOOZ_TEST_ETCD_PORT="$client_port" \
    timeout 300 "$python" -m unittest etcd3gw.tests.test_etcd3gw >"$work/etcd3gw.out" 2>&1
  status=$?
  set -e
  ran=$(grep -E '^Ran [0-9]+ tests' "$work/etcd3gw.out")
  skipped=$(grep -c 'skipped' "$work/etcd3gw.out" || true)
  [ "$status" = 0 ] && [ "$skipped" = 0 ]
  report "etcd3gw's functional tests against swift-etcd ($ran)" $? "$(grep -E '^(FAIL|ERROR)' "$work/etcd3gw.out" | head -5)"
  set +e
  timeout 60 "$python" - "$client_port" >"$work/websocket.out" 2>&1 <<'PY'
import base64, json, sys, urllib.request
import websocket
port = sys.argv[1]
ws = websocket.create_connection(f"ws://127.0.0.1:{port}/v3/watch", timeout=10)
ws.send(json.dumps({"create_request": {"key": base64.b64encode(b"ws").decode()}}))
assert json.loads(ws.recv())["result"]["created"] is True
request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/put", method="POST",
                                 data=json.dumps({"key": "d3M=", "value": "MQ=="}).encode())
urllib.request.urlopen(request).read()
event = json.loads(ws.recv())["result"]["events"][0]["kv"]
assert (event["key"], event["value"]) == ("d3M=", "MQ=="), event
ws.send(json.dumps({"cancel_request": {"watch_id": 0}}))
assert json.loads(ws.recv())["result"]["canceled"] is True
ws.close()
print("ok")
PY
  status=$?
  set -e
  report "a watch over a WebSocket: created, an event, canceled" "$status" "$(tail -3 "$work/websocket.out")"
else
  report "swift-etcd started for the gateway checks" 1
fi
kill "${pids[-1]}" 2>/dev/null || true

echo "== 10. etcdctl lock and elect, the gateway's lock and election paths: the real etcd and swift-etcd"
against_both coordination "locks and elections" 180 bash scripts/coordination_check.sh

echo "== 11. moving from etcd: the real etcd's snapshot (etcdctl) restored by swift-etcdutl answers the same"
etcd_port=$(free_port)
etcd_peer=$(free_port)
start_etcd migrate "$work/migrate-etcd" "$etcd_port" "$etcd_peer" "$work/migrate-etcd.log"
pids+=($!)
if wait_for_port "$etcd_port" 30; then
  set +e
  at() { ETCDCTL_API=3 etcdctl --command-timeout=10s --endpoints "127.0.0.1:$1" "${@:2}"; }
  for i in $(seq 1 200); do at "$etcd_port" put "key/$((i % 50))" "value-$i" >/dev/null; done
  at "$etcd_port" put big "$(head -c 20000 /dev/zero | tr '\0' b)" >/dev/null  # larger than a page
  at "$etcd_port" del key/7 >/dev/null
  lease=$(at "$etcd_port" lease grant 600 | awk '{print $2}')
  at "$etcd_port" put --lease="$lease" leased yes >/dev/null
  at "$etcd_port" compact 100 >/dev/null
  for step in "user add root:rootpw" "role add root" "user grant-role root root" "user add alice:alicepw" \
    "role add reader" "role grant-permission reader read key/ --prefix=true" "user grant-role alice reader" "auth enable"; do
    # shellcheck disable=SC2086
    at "$etcd_port" $step >/dev/null
  done
  at "$etcd_port" --user root:rootpw snapshot save "$work/migrate.db" >"$work/migrate-save.log" 2>&1
  swift_port=$(free_port)
  swift_peer=$(free_port)
  "$bin/swift-etcdutl" snapshot restore "$work/migrate.db" --name migrate --data-dir "$work/migrate-swift" \
    --initial-cluster "migrate=http://127.0.0.1:$swift_peer" --initial-advertise-peer-urls "http://127.0.0.1:$swift_peer" \
    >"$work/migrate-restore.log" 2>&1
  report "swift-etcdutl snapshot restore of the etcd snapshot" $? "$(tail -1 "$work/migrate-restore.log")"
  start_member "$bin/swift-etcd" migrate "$work/migrate-swift" "$swift_port" "$swift_peer" "$work/migrate-swift.log"
  pids+=($!)
  if wait_for_port "$swift_port" 30; then
    # Everything but the header (cluster and member IDs differ), as JSON, at four revisions.
    without_header() { "$python" -c 'import json, sys; d = json.load(sys.stdin); d.pop("header", None); print(json.dumps(d, sort_keys=True))'; }
    for revision in 0 100 150 204; do
      etcd_answer=$(at "$etcd_port" --user root:rootpw get "" --from-key -w json --rev=$revision | without_header)
      swift_answer=$(at "$swift_port" --user root:rootpw get "" --from-key -w json --rev=$revision | without_header)
      [ -n "$etcd_answer" ] && [ "$etcd_answer" = "$swift_answer" ]
      report "get --from-key -w json --rev=$revision the same from the restored member (${#etcd_answer} bytes)" $? \
        "$(head -c 300 <<<"$swift_answer")"
    done
    compacted=$(at "$swift_port" --user root:rootpw get key/1 --rev=99 2>&1 | tail -1)
    [ "$compacted" = "Error: etcdserver: mvcc: required revision has been compacted" ]
    report "a revision before etcd's compaction is compacted on the restored member" $? "$compacted"
    # (`role get root` differs between etcd 3.4 and 3.6 whatever the data: 3.6 lists root's access.)
    for command in "lease list" "user list" "user get alice" "role get reader" "auth status"; do
      # shellcheck disable=SC2086
      etcd_answer=$(at "$etcd_port" --user root:rootpw $command 2>&1)
      # shellcheck disable=SC2086
      swift_answer=$(at "$swift_port" --user root:rootpw $command 2>&1)
      [ "$etcd_answer" = "$swift_answer" ]
      report "etcdctl $command the same from the restored member" $? "$etcd_answer / $swift_answer"
    done
    alice=$(at "$swift_port" --user alice:alicepw get key/1 --print-value-only 2>&1)
    [ "$alice" = "$(at "$etcd_port" --user alice:alicepw get key/1 --print-value-only 2>&1)" ] && [ -n "$alice" ]
    report "alice logs in with her etcd password on the restored member and reads" $? "$alice"
  else
    report "swift-etcd started from the etcd snapshot" 1 "$(tail -3 "$work/migrate-swift.log")"
  fi
  set -e
else
  report "etcd started for the migration check" 1
fi

echo "== 12. logs: request stats as etcd writes them, and the log file rotated"
# The same etcdctl calls against both servers at --log-level debug, where both log every unary
# call's `request stats`; the lines must agree but for times, the caller's port and sizes of
# response headers. swift-etcd also rotates its log file: gzipped backups of whole JSON lines.
set +e
log_calls() { # log_calls ENDPOINT
  etcdctl --endpoints "$1" put foo bar >/dev/null
  etcdctl --endpoints "$1" get foo >/dev/null
  printf 'value("foo") != "bar"\n\nput t secret\n\nget foo\nget foo\n\n' | etcdctl --endpoints "$1" txn >/dev/null
  etcdctl --endpoints "$1" lease grant 60 >/dev/null
  etcdctl --endpoints "$1" del foo >/dev/null
  etcdctl --endpoints "$1" member list >/dev/null
}
request_stats() { # request_stats LOG: the request stats lines, without what differs run to run
  "$python" -c '
import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    if entry.get("msg") != "request stats": continue
    for field in ("ts", "caller", "start time", "time spent", "remote", "response size"): entry.pop(field, None)
    print(json.dumps(entry, sort_keys=True))' "$1"
}
for server in etcd swift-etcd; do
  client_port=$(free_port)
  peer_port=$(free_port)
  mkdir -p "$work/logs-$server"
  if [ "$server" = etcd ]; then
    start_member "$(command -v etcd)" logs "$work/logs-$server/data" "$client_port" "$peer_port" "$work/logs-$server/start.log" \
      --logger zap --log-level debug --log-outputs "$work/logs-$server/etcd.log"
  else
    start_member "$bin/swift-etcd" logs "$work/logs-$server/data" "$client_port" "$peer_port" "$work/logs-$server/start.log" \
      --log-level debug --log-outputs "$work/logs-$server/etcd.log" --enable-log-rotation \
      --log-rotation-config-json '{"maxsize": 1, "maxbackups": 1, "compress": true}'
  fi
  pids+=($!)
  if wait_for_port "$client_port" 30; then
    log_calls "127.0.0.1:$client_port"
    request_stats "$work/logs-$server/etcd.log" >"$work/logs-$server.stats"
    if [ "$server" = swift-etcd ]; then
      # About 400 bytes of debug lines a put: 4,000 puts fill the 1 MiB file at least once.
      "$bin/swift-etcd-benchmark" put --endpoints "127.0.0.1:$client_port" --clients 32 --total 4000 >/dev/null 2>&1
      sleep 1  # the backup is gzipped in the background after the rotation
    fi
  else
    report "$server started for the log checks" 1 "$(tail -3 "$work/logs-$server/start.log")"
  fi
  kill "${pids[-1]}" 2>/dev/null
  wait "${pids[-1]}" 2>/dev/null
done
[ "$(wc -l <"$work/logs-etcd.stats")" = 6 ] && diff "$work/logs-etcd.stats" "$work/logs-swift-etcd.stats" >"$work/logs.diff"
report "request stats lines of 6 etcdctl calls the same as etcd's (but for times, ports and header sizes)" $? \
  "$(head -c 600 "$work/logs.diff")"
backups=$(find "$work/logs-swift-etcd" -name 'etcd-*.log.gz')
whole=$([ "$(wc -w <<<"$backups")" = 1 ] && gzip -dc "$backups" | "$python" -c '
import json, sys
lines = [json.loads(line) for line in sys.stdin]
print(len(lines) if lines and all("level" in entry for entry in lines) else 0)')
size=$(stat -c %s "$work/logs-swift-etcd/etcd.log")
[ "${whole:-0}" -gt 1000 ] && [ "$size" -le 1048576 ]
report "--enable-log-rotation: one gzipped backup of $whole whole JSON lines, the live file at $size bytes" $? "$backups"
set -e

echo "interop: $passed passed, $failed failed"
[ "$failed" = 0 ]
