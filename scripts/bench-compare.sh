#!/usr/bin/env bash
# Side-by-side benchmark: Debian's etcd and swift-etcd (release build) on this machine, same
# disk, same client (swift-etcd-benchmark), in alternation (etcd, swift-etcd, etcd, ...) for
# ROUNDS rounds; prints per-workload medians and the swift-etcd/etcd ratio, the disk's fdatasync
# floor, and each server's RSS after loading 1,000,000 keys and its restart-to-ready time.
# Beside QPS and latency, every workload reports the CPU time (user + system) the server spent
# per operation (summed over all members for clusters) and the client's, in µs: how many cores a
# load needs, which QPS on a machine shared by client and server cannot say. The *-pinned
# workloads start the server on core 0 and run the client on core 1 (taskset), so Go's runtime
# sizes itself to one core as swift-etcd's event loops do: throughput per core. The go-* workloads
# repeat the headline ones with Go clientv3 (scripts/goclient/src/goload) as the client.
# The *-tls workloads run both servers as kubeadm runs etcd (scripts/with-tls.sh: client and
# peer certificates from one throwaway PKI, --client-cert-auth) and the client with a certificate.
# The *-auth workloads run with auth on (simple tokens) as user bench, whose role grants
# readwrite on a prefix (the empty one: every key) beside an unrelated prefix; login-16 measures
# logins (bcrypt at cost 10), put-256-auth-flood puts while 8 clients send wrong passwords.
# Then defragmentation under load (scripts/defrag-bench.sh: 1 GiB filled, half deleted, puts at
# 1,000/s through Go clientv3 while Defragment runs).
#   scripts/bench-compare.sh [ROUNDS] [--quick] [--single] [--defrag] [--memory]   (ROUNDS defaults to 3)
# --quick uses smaller totals and 100,000 keys for the memory test (a smoke run); --single runs
# only the single-member workloads (plain, TLS, auth); --defrag runs only the defragmentation;
# --memory only the memory and restart test, ROUNDS times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
rounds=${1:-3}
quick=false
single=false
memory_only=false
for option in "${@:2}"; do
  [ "$option" = "--quick" ] && quick=true
  [ "$option" = "--single" ] && single=true
  [ "$option" = "--defrag" ] && exec scripts/defrag-bench.sh
  [ "$option" = "--memory" ] && memory_only=true
done
scale=1
$quick && scale=10

swift build -c release --product swift-etcd >/dev/null
swift build -c release --product swift-etcd-benchmark >/dev/null
swift build -c release --product wal-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
bench="$bin/swift-etcd-benchmark"
work="$PWD/.bench-compare"
rm -rf "$work"; mkdir -p "$work"
# The go-* workloads use Go clientv3 (scripts/goclient/src/goload), as most etcd users' programs do.
(cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" go build -o "$work/goload" goload)
results="$work/results.tsv"
pki="$work/pki"
scripts/make-test-certs.sh "$pki" >/dev/null
tls_client=(--cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client-key.pem")
: > "$results"
pid=""
cluster_pids=()
server_pin=()   # taskset prefix for servers started by start_server (the pinned block)
client_pin=()   # taskset prefix for the benchmark client
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null || true; for p in "${cluster_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work/data"' EXIT

# start_server NAME DATA_DIR PORT PEER_PORT [tls]: starts etcd or swift-etcd with the same
# flags (and the same certificates with tls).
start_server() {
  local name=$1 dir=$2 port=$3 peer=$4 tls=${5:-}
  local server
  server=$(command -v etcd)
  [ "$name" = etcd ] || server="$bin/swift-etcd"
  local launch=("${server_pin[@]}" "$server")
  [ -n "$tls" ] && launch=("${server_pin[@]}" env REAL_BINARY="$server" TLS_DIR="$pki" scripts/with-tls.sh)
  "${launch[@]}" --data-dir "$dir" --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" --log-level error >"$work/$name.log" 2>&1 &
  pid=$!
  wait_for_port "$port"
}

# wait_ready PORT [tls]: until a status call answers (bounded).
wait_ready() {
  local flags=()
  [ -n "${2:-}" ] && flags=("${tls_client[@]}")
  for _ in $(seq 1 600); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" "${flags[@]}" --command-timeout=1s endpoint status >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not become ready" >&2; return 1
}

stop_server() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }

# seed_range_key PORT [tls]: the key the range workloads read ("foo", a 256-byte value). A
# range of a missing key reads nothing from either server's backend; users read keys that exist.
seed_range_key() {
  local flags=()
  [ -n "${2:-}" ] && flags=("${tls_client[@]}")
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" "${flags[@]}" put foo "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
}

# memory_and_restart: each server's RSS after loading 1,000,000 keys (64-byte keys, 256-byte
# values) and its restart-to-ready time with them.
memory_and_restart() {
  local keys port peer rss start ready count
  keys=1000000; $quick && keys=100000
  echo
  echo "memory and restart with $keys keys (64-byte keys, 256-byte values):"
  for server in etcd swift-etcd; do
    rm -rf "$work/data"; mkdir -p "$work/data"
    port=$(free_port); peer=$(free_port)
    start_server "$server" "$work/data/$server" "$port" "$peer"
    wait_ready "$port"
    "$bench" put --endpoints "127.0.0.1:$port" --clients 256 --conns 16 --total "$keys" --key-space-size "$keys" \
      --sequential-keys --key-size 64 --val-size 256 >/dev/null 2>&1
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    stop_server
    start=$(date +%s.%N)
    start_server "$server" "$work/data/$server" "$port" "$peer"
    wait_ready "$port"
    ready=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
    count=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get "" --prefix --limit 1 -w json |
      python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))')
    stop_server
    echo "  $server: RSS ${rss} KiB after loading, restart-to-ready ${ready} s, keys after restart ${count}"
  done
}

# server_ticks: CPU time (user + system, in clock ticks) the running server or cluster members
# have used so far.
server_ticks() {
  local total=0 p
  for p in $pid "${cluster_pids[@]}"; do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# run_workload SERVER ROUND NAME ARGS...: records the RESULT lines of one swift-etcd-benchmark
# run (go_workload: one goload run), with the server's and the client's CPU time per operation
# (µs) for the line that counts the run's operations (a watch run's delivered events).
run_workload() { run_client "$bench" "$@"; }
go_workload() { run_client "$work/goload" "$@"; }
run_client() {
  local client=$1 server=$2 round=$3 name=$4; shift 4
  local out before ticks client_cpu
  before=$(server_ticks)
  if out=$("${client_pin[@]}" /usr/bin/time -o "$work/client-cpu" -f '%U %S' "$client" "$@" 2>/dev/null); then
    ticks=$(( $(server_ticks) - before ))
    client_cpu=$(awk '{print $1 + $2}' "$work/client-cpu")
    echo "$out" | grep '^RESULT' | while read -r line; do
      qps=$(echo "$line" | sed -n 's/.* qps=\([0-9.]*\).*/\1/p')
      p50=$(echo "$line" | sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p')
      p99=$(echo "$line" | sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p')
      errors=$(echo "$line" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
      count=$(echo "$line" | sed -n 's/.* count=\([0-9]*\).*/\1/p')
      op=$(echo "$line" | sed -n 's/^RESULT op=\([^ ]*\).*/\1/p')
      suffix=""; [ "$op" = watch-create ] && suffix=":create"; [ "$op" = watch-event ] && suffix=":events"
      [ "$op" = put ] && [ "$name" = watch-fanout ] && continue
      server_us=-; client_us=-
      if [ "$op" != watch-create ] && [ "${count:-0}" -gt 0 ]; then
        server_us=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$count" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
        client_us=$(awk -v s="$client_cpu" -v n="$count" 'BEGIN {printf "%.1f", s * 1e6 / n}')
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$round" "$name$suffix" "$qps" "$p50" "$p99" "$errors" \
        "$server_us" "$client_us" >> "$results"
    done
  else
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$round" "$name" "fail" "-" "-" "-" "-" "-" >> "$results"
  fi
}

total() { echo $(( $1 / scale )); }

# enable_auth PORT: root, and user bench whose role may read and write every key (the empty
# prefix) and one unrelated prefix; then auth on.
enable_auth() {
  local etcdctl=(env ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1")
  for command in "user add root:root" "role add root" "user grant-role root root" "user add bench:bench" "role add bench" \
    "role grant-permission bench --prefix=true readwrite /unrelated/" "user grant-role bench bench"; do
    # shellcheck disable=SC2086
    "${etcdctl[@]}" $command >/dev/null
  done
  "${etcdctl[@]}" role grant-permission bench --prefix=true readwrite "" >/dev/null
  "${etcdctl[@]}" auth enable >/dev/null
}

if $memory_only; then
  for _ in $(seq 1 "$rounds"); do memory_and_restart; done
  exit 0
fi

for round in $(seq 1 "$rounds"); do
  for server in etcd swift-etcd; do
    rm -rf "$work/data"; mkdir -p "$work/data"
    port=$(free_port); peer=$(free_port)
    start_server "$server" "$work/data/$server" "$port" "$peer"
    wait_ready "$port"
    seed_range_key "$port"
    ep="127.0.0.1:$port"
    echo "round $round: $server" >&2
    run_workload "$server" "$round" put-1 put --endpoints "$ep" --clients 1 --conns 1 --total "$(total 2000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" put-16 put --endpoints "$ep" --clients 16 --conns 4 --total "$(total 20000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" put-256 put --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    # etcd's own benchmark defaults to one key: 100,000 puts rewrite it, with no compaction.
    run_workload "$server" "$round" put-1key-256 put --endpoints "$ep" --clients 256 --conns 16 --total "$(total 100000)" --val-size 256
    run_workload "$server" "$round" range-l-256 range foo --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    run_workload "$server" "$round" range-s-256 range foo --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency s
    run_workload "$server" "$round" txn-put txn-put --endpoints "$ep" --clients 64 --conns 8 --total "$(total 20000)" --txn-ops 4 --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" lease-keepalive lease-keepalive --endpoints "$ep" --clients 64 --conns 8 --total "$(total 50000)"
    run_workload "$server" "$round" watch-fanout watch --endpoints "$ep" --clients 10 --conns 10 --streams 10 --watch-per-stream 100 --put-total "$(total 1000)"
    go_workload "$server" "$round" go-put-1 --op put --endpoints "$ep" --clients 1 --conns 1 --total "$(total 2000)" --key-space-size 100000 --val-size 256
    go_workload "$server" "$round" go-put-256 --op put --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    go_workload "$server" "$round" go-range-l-256 --op range --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    go_workload "$server" "$round" go-range-s-256 --op range --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency s
    go_workload "$server" "$round" go-txn-put --op txn-put --endpoints "$ep" --clients 64 --conns 8 --total "$(total 20000)" --txn-ops 4 --key-space-size 100000 --val-size 256
    stop_server
    rm -rf "$work/data"; mkdir -p "$work/data"
    port=$(free_port); peer=$(free_port)
    start_server "$server" "$work/data/$server" "$port" "$peer" tls
    wait_ready "$port" tls
    seed_range_key "$port" tls
    ep="https://127.0.0.1:$port"
    run_workload "$server" "$round" put-256-tls put --endpoints "$ep" "${tls_client[@]}" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" range-l-256-tls range foo --endpoints "$ep" "${tls_client[@]}" --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    run_workload "$server" "$round" range-s-256-tls range foo --endpoints "$ep" "${tls_client[@]}" --clients 256 --conns 16 --total "$(total 50000)" --consistency s
    stop_server
    rm -rf "$work/data"; mkdir -p "$work/data"
    port=$(free_port); peer=$(free_port)
    start_server "$server" "$work/data/$server" "$port" "$peer"
    wait_ready "$port"
    seed_range_key "$port"
    enable_auth "$port"
    ep="127.0.0.1:$port"
    run_workload "$server" "$round" put-256-auth put --endpoints "$ep" --user bench:bench --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" range-l-256-auth range foo --endpoints "$ep" --user bench:bench --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    run_workload "$server" "$round" range-s-256-auth range foo --endpoints "$ep" --user bench:bench --clients 256 --conns 16 --total "$(total 50000)" --consistency s
    # bcrypt (cost 10) throughput, then puts while 8 clients try wrong passwords without pause.
    run_workload "$server" "$round" login-16 login --endpoints "$ep" --login bench:bench --clients 16 --conns 4 --total "$(total 300)"
    "$bench" login --endpoints "$ep" --login bench:wrong --clients 8 --conns 2 --total 10000000 >/dev/null 2>&1 &
    flood=$!
    sleep 1
    run_workload "$server" "$round" put-256-auth-flood put --endpoints "$ep" --user bench:bench --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    kill "$flood" 2>/dev/null || true; wait "$flood" 2>/dev/null || true
    stop_server
    # The same loads with the server on core 0 (started there, so Go sizes itself to one core)
    # and the client on core 1.
    rm -rf "$work/data"; mkdir -p "$work/data"
    port=$(free_port); peer=$(free_port)
    server_pin=(taskset -c 0); client_pin=(taskset -c 1)
    start_server "$server" "$work/data/$server" "$port" "$peer"
    wait_ready "$port"
    seed_range_key "$port"
    ep="127.0.0.1:$port"
    run_workload "$server" "$round" put-256-pinned put --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" put-1key-256-pinned put --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --val-size 256
    run_workload "$server" "$round" range-l-256-pinned range foo --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    run_workload "$server" "$round" range-s-256-pinned range foo --endpoints "$ep" --clients 256 --conns 16 --total "$(total 50000)" --consistency s
    run_workload "$server" "$round" txn-put-pinned txn-put --endpoints "$ep" --clients 64 --conns 8 --total "$(total 20000)" --txn-ops 4 --key-space-size 100000 --val-size 256
    stop_server
    server_pin=(); client_pin=()
  done
done

# 3-member clusters (the same machine, so this measures the replication path, not a network):
# puts from 256 clients spread over all three members' endpoints.
$single && rounds_cluster=0 || rounds_cluster=$rounds
for round in $(seq 1 "$rounds_cluster"); do
  for server in etcd swift-etcd; do
    rm -rf "$work/data"; mkdir -p "$work/data"
    binary=etcd; [ "$server" = etcd ] || binary="$bin/swift-etcd"
    ports=(); peers=(); cluster_pids=()
    for m in 0 1 2; do ports+=("$(free_port)"); peers+=("$(free_port)"); done
    initial="m0=http://127.0.0.1:${peers[0]},m1=http://127.0.0.1:${peers[1]},m2=http://127.0.0.1:${peers[2]}"
    for m in 0 1 2; do
      "$binary" --name "m$m" --data-dir "$work/data/m$m" --initial-cluster "$initial" --initial-cluster-token bench \
        --listen-client-urls "http://127.0.0.1:${ports[$m]}" --advertise-client-urls "http://127.0.0.1:${ports[$m]}" \
        --listen-peer-urls "http://127.0.0.1:${peers[$m]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[$m]}" \
        --log-level error >"$work/$server-m$m.log" 2>&1 &
      cluster_pids+=($!)
    done
    for m in 0 1 2; do wait_ready "${ports[$m]}"; done
    seed_range_key "${ports[0]}"
    eps="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    echo "round $round: $server, 3 members" >&2
    run_workload "$server" "$round" cluster3-put-256 put --endpoints "$eps" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    go_workload "$server" "$round" go-cluster3-put-256 --op put --endpoints "$eps" --clients 256 --conns 16 --total "$(total 50000)" --key-space-size 100000 --val-size 256
    run_workload "$server" "$round" cluster3-range-l-256 range foo --endpoints "$eps" --clients 256 --conns 16 --total "$(total 50000)" --consistency l
    # Two thirds of the keep-alives reach followers, which forward them to the leader.
    run_workload "$server" "$round" cluster3-lease-keepalive lease-keepalive --endpoints "$eps" --clients 64 --conns 8 --total "$(total 50000)"
    for p in "${cluster_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    cluster_pids=()
  done
done

# Watch, one round: fan-out to 10,000 watchers of distinct keys, delivery latency, the memory
# an idle watcher and an idle stream cost (each on a fresh server), and fast watchers beside a
# watcher that reads nothing (a paused etcdctl): their latency, and the memory the server holds
# for it (RSS growth under the same load with and without it).
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
fresh_server() { # fresh_server SERVER: a new empty server; sets pid and ep
  stop_server
  rm -rf "$work/data"; mkdir -p "$work/data"
  local port peer
  port=$(free_port); peer=$(free_port)
  start_server "$1" "$work/data/$1" "$port" "$peer"
  wait_ready "$port"
  ep="127.0.0.1:$port"
}
idle_watcher_bytes() { # idle_watcher_bytes SERVER STREAMS PER_STREAM: sets result to the RSS growth per watcher held
  local streams=$2 per=$3 before after holder
  fresh_server "$1"
  before=$(rss_kib "$pid")
  "$bench" watch --endpoints "$ep" --clients 10 --conns 10 --streams "$streams" --watch-per-stream "$per" \
    --watched-key-total $((streams * per)) --put-total 0 --hold 30 >"$work/hold.out" 2>&1 &
  holder=$!
  for _ in $(seq 1 600); do grep -q '^HOLDING' "$work/hold.out" && break; sleep 0.1; done
  sleep 1
  after=$(rss_kib "$pid")
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
  result=$(( (after - before) * 1024 / (streams * per) ))
}
load_growth_kib() { # load_growth_kib SERVER NAME PAUSED: sets result to the RSS growth under the latency load, with a paused watcher or not
  local before after slow=""
  fresh_server "$1"
  if [ "$3" = paused ]; then
    ETCDCTL_API=3 etcdctl --endpoints "$ep" watch --prefix "" >/dev/null 2>&1 &
    slow=$!
    sleep 1; kill -STOP "$slow"
  fi
  before=$(rss_kib "$pid")
  run_workload "$1" 1 "$2" watch-latency --endpoints "$ep" --clients 10 --conns 10 --total "$(total 3000)" \
    --put-rate 100 --val-size 32768
  after=$(rss_kib "$pid")
  if [ -n "$slow" ]; then kill -9 "$slow"; wait "$slow" 2>/dev/null || true; fi
  result=$((after - before))
}
for server in $($single || echo etcd swift-etcd); do
  echo "watch: $server" >&2
  fresh_server "$server"
  run_workload "$server" 1 watch-keys watch --endpoints "$ep" --clients 10 --conns 10 --streams 100 --watch-per-stream 100 \
    --watched-key-total 10000 --put-total "$(total 10000)"
  run_workload "$server" 1 watch-latency watch-latency --endpoints "$ep" --clients 10 --conns 10 --total "$(total 1000)" --put-rate 100
  idle_watcher_bytes "$server" 10 1000; per_watcher=$result
  idle_watcher_bytes "$server" 1000 1; per_stream=$result
  load_growth_kib "$server" watch-latency-32k alone; alone=$result
  load_growth_kib "$server" watch-latency-32k-beside-paused paused; paused=$result
  stop_server
  echo "  $server: ${per_watcher} B per idle watcher (10 streams of 1,000), ${per_stream} B per idle stream of one watcher;" \
    "RSS growth under 32 KiB puts at 100/s: $((alone / 1024)) MiB alone, $((paused / 1024)) MiB with a paused watcher" \
    "that was sent $(( $(total 3000) * 32 / 1024 )) MiB" >>"$work/watch-memory.txt"
done

echo
echo "bench-compare: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $rounds rounds, medians"
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
data = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for server, _, workload, qps, p50, p99, errors, server_us, client_us in rows:
    if workload not in order: order.append(workload)
    data[workload][server].append((qps, p50, p99, server_us, client_us))
def median(values, i):
    numbers = [float(v[i]) for v in values if v[i] not in ("fail", "-")]
    return statistics.median(numbers) if numbers else None
def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"
print(f"{'workload':22} {'etcd qps':>10} {'swift qps':>10} {'ratio':>7} {'etcd p50':>9} {'swift p50':>9} {'ratio':>7} {'etcd p99':>9} {'swift p99':>9}")
for w in order:
    e, s = data[w]["etcd"], data[w]["swift-etcd"]
    eq, sq = median(e, 0), median(s, 0)
    ep, sp = median(e, 1), median(s, 1)
    e9, s9 = median(e, 2), median(s, 2)
    ratio = fmt(sq / eq, 2) if eq and sq else "n/a"
    latency = fmt(sp / ep, 2) if ep and sp else "n/a"
    print(f"{w:22} {fmt(eq):>10} {fmt(sq):>10} {ratio:>7} {fmt(ep, 2):>9} {fmt(sp, 2):>9} {latency:>7} {fmt(e9, 2):>9} {fmt(s9, 2):>9}")
print()
print("CPU time per operation, user + system, µs (server: all members; client: swift-etcd-benchmark)")
print(f"{'workload':22} {'etcd srv':>9} {'swift srv':>9} {'ratio':>7} {'etcd cli':>9} {'swift cli':>9}")
for w in order:
    e, s = data[w]["etcd"], data[w]["swift-etcd"]
    es, ss = median(e, 3), median(s, 3)
    if es is None and ss is None: continue
    ratio = fmt(ss / es, 2) if es and ss else "n/a"
    print(f"{w:22} {fmt(es):>9} {fmt(ss):>9} {ratio:>7} {fmt(median(e, 4)):>9} {fmt(median(s, 4)):>9}")
PY

$single && exit 0
echo
echo "watch memory (one round):"
cat "$work/watch-memory.txt"

leases=1000000; $quick && leases=100000
echo
echo "memory with $leases live leases (TTL 1 h):"
for server in etcd swift-etcd; do
  fresh_server "$server"
  before=$(rss_kib "$pid")
  out=$("$bench" lease-grant --endpoints "$ep" --clients 256 --conns 16 --total "$leases" 2>/dev/null | grep '^RESULT')
  after=$(rss_kib "$pid")
  stop_server
  echo "  $server: RSS grew $(( (after - before) / 1024 )) MiB ($(( (after - before) * 1024 / leases )) B per lease); $out"
done

echo
echo "physical floor (same disk):"
(cd "$work" && "$bin/wal-bench" --dir "$work/floor" --seconds 3 | grep -v '^RESULT' | grep floor)

memory_and_restart

echo
if $quick; then scripts/defrag-bench.sh 128; else scripts/defrag-bench.sh; fi
