#!/usr/bin/env python3
"""A real Prometheus (Debian's) scrapes a three-member swift-etcd cluster, and every expression
of the etcd-mixin's alert rules and dashboard panels is evaluated against it (not run in CI:
it takes about four minutes).

1. Three members with --metrics extensive, scraped every second as job "etcd"; two minutes of
   load through etcdctl (puts, gets, a transaction, a lease kept alive, a watch).
2. Each dashboard expression must return data. Each alert rule must not fire on the healthy
   cluster, and its expression without the final threshold must return data (what the rule
   compares).
3. One member killed: `up` and the peers' send failures turn etcdMembersDown on, while
   etcdInsufficientMembers and etcdNoLeader stay off. A second member killed: the survivor
   has no leader, and etcdNoLeader and etcdInsufficientMembers fire.

Usage: scripts/prometheus_mixin.py [--swift-etcd PATH] [--prometheus PATH] [--load-seconds N]
Prints one line per expression; exits 1 if any check fails.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

SEL = 'job=~".*etcd.*"'
DASH = 'job=~".*etcd.*", job="etcd"'
FAILED_CODES = "Unknown|FailedPrecondition|ResourceExhausted|Internal|Unavailable|DataLoss|DeadlineExceeded"

# (name, full expression, what it compares) from contrib/mixin/alerts/alerts.libsonnet, with the
# mixin's default selector; the threshold-free part is what must return data.
ALERTS = [
    ("etcdMembersDown",
     f"max without (endpoint) (sum without (instance) (up{{{SEL}}} == bool 0) or count without (To) "
     f"(sum without (instance) (rate(etcd_network_peer_sent_failures_total{{{SEL}}}[120s])) > 0.01)) > 0",
     f"sum without (instance) (up{{{SEL}}} == bool 0)"),
    ("etcdInsufficientMembers",
     f"sum(up{{{SEL}}} == bool 1) without (instance) < ((count(up{{{SEL}}}) without (instance) + 1) / 2)",
     f"sum(up{{{SEL}}} == bool 1) without (instance)"),
    ("etcdNoLeader", f"etcd_server_has_leader{{{SEL}}} == 0", f"etcd_server_has_leader{{{SEL}}}"),
    ("etcdHighNumberOfLeaderChanges",
     f"increase((max without (instance) (etcd_server_leader_changes_seen_total{{{SEL}}}) or "
     f"0*absent(etcd_server_leader_changes_seen_total{{{SEL}}}))[15m:1m]) >= 4",
     f"increase((max without (instance) (etcd_server_leader_changes_seen_total{{{SEL}}}) or "
     f"0*absent(etcd_server_leader_changes_seen_total{{{SEL}}}))[15m:1m])"),
    ("etcdHighNumberOfFailedGRPCRequests",
     f'100 * sum(rate(grpc_server_handled_total{{{SEL}, grpc_code=~"{FAILED_CODES}"}}[5m])) without (grpc_type, grpc_code) '
     f"/ sum(rate(grpc_server_handled_total{{{SEL}}}[5m])) without (grpc_type, grpc_code) > 1",
     f'100 * sum(rate(grpc_server_handled_total{{{SEL}, grpc_code=~"{FAILED_CODES}"}}[5m])) without (grpc_type, grpc_code) '
     f"/ sum(rate(grpc_server_handled_total{{{SEL}}}[5m])) without (grpc_type, grpc_code)"),
    ("etcdGRPCRequestsSlow",
     f'histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{{{SEL}, grpc_method!="Defragment", '
     f'grpc_type="unary"}}[5m])) without(grpc_type)) > 0.15',
     f'histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{{{SEL}, grpc_method!="Defragment", '
     f'grpc_type="unary"}}[5m])) without(grpc_type))'),
    ("etcdMemberCommunicationSlow",
     f"histogram_quantile(0.99, rate(etcd_network_peer_round_trip_time_seconds_bucket{{{SEL}}}[5m])) > 0.15",
     f"histogram_quantile(0.99, rate(etcd_network_peer_round_trip_time_seconds_bucket{{{SEL}}}[5m]))"),
    ("etcdHighNumberOfFailedProposals", f"rate(etcd_server_proposals_failed_total{{{SEL}}}[15m]) > 5",
     f"rate(etcd_server_proposals_failed_total{{{SEL}}}[15m])"),
    ("etcdHighFsyncDurations",
     f"histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{SEL}}}[5m])) > 0.5",
     f"histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{SEL}}}[5m]))"),
    ("etcdHighCommitDurations",
     f"histogram_quantile(0.99, rate(etcd_disk_backend_commit_duration_seconds_bucket{{{SEL}}}[5m])) > 0.25",
     f"histogram_quantile(0.99, rate(etcd_disk_backend_commit_duration_seconds_bucket{{{SEL}}}[5m]))"),
    ("etcdDatabaseQuotaLowSpace",
     f"(last_over_time(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[5m]) / "
     f"last_over_time(etcd_server_quota_backend_bytes{{{SEL}}}[5m]))*100 > 95",
     f"(last_over_time(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[5m]) / "
     f"last_over_time(etcd_server_quota_backend_bytes{{{SEL}}}[5m]))*100"),
    ("etcdExcessiveDatabaseGrowth",
     f"predict_linear(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[4h], 4*60*60) > etcd_server_quota_backend_bytes{{{SEL}}}",
     f"predict_linear(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[4h], 4*60*60)"),
    ("etcdDatabaseHighFragmentationRatio",
     f"(last_over_time(etcd_mvcc_db_total_size_in_use_in_bytes{{{SEL}}}[5m]) / "
     f"last_over_time(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[5m])) < 0.5 and "
     f"etcd_mvcc_db_total_size_in_use_in_bytes{{{SEL}}} > 104857600",
     f"(last_over_time(etcd_mvcc_db_total_size_in_use_in_bytes{{{SEL}}}[5m]) / "
     f"last_over_time(etcd_mvcc_db_total_size_in_bytes{{{SEL}}}[5m]))"),
]

# The panels of contrib/mixin/dashboards (targets.libsonnet and the Grafana 7 variant), with
# $cluster = etcd and $__rate_interval = 1m.
PANELS = [
    ("Up", f"sum(etcd_server_has_leader{{{DASH}}})"),
    ("RPC rate", f'sum(rate(grpc_server_started_total{{{DASH},grpc_type="unary"}}[1m]))'),
    ("RPC failed rate", f'sum(rate(grpc_server_handled_total{{{DASH},grpc_type="unary",grpc_code=~"{FAILED_CODES}"}}[1m]))'),
    ("Watch streams", f'sum(grpc_server_started_total{{{DASH},grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}}) - '
                      f'sum(grpc_server_handled_total{{job="etcd",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}})'),
    ("Lease streams", f'sum(grpc_server_started_total{{{DASH},grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}}) - '
                      f'sum(grpc_server_handled_total{{job="etcd",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}})'),
    ("DB size", f"etcd_mvcc_db_total_size_in_bytes{{{DASH}}}"),
    ("WAL fsync p99", f"histogram_quantile(0.99, sum(rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{DASH}}}[1m])) by (instance, le))"),
    ("DB fsync p99", f"histogram_quantile(0.99, sum(rate(etcd_disk_backend_commit_duration_seconds_bucket{{{DASH}}}[1m])) by (instance, le))"),
    ("Memory", f"process_resident_memory_bytes{{{DASH}}}"),
    ("Client traffic in", f"rate(etcd_network_client_grpc_received_bytes_total{{{DASH}}}[1m])"),
    ("Client traffic out", f"rate(etcd_network_client_grpc_sent_bytes_total{{{DASH}}}[1m])"),
    ("Peer traffic in", f"sum(rate(etcd_network_peer_received_bytes_total{{{DASH}}}[1m])) by (instance)"),
    ("Peer traffic out", f"sum(rate(etcd_network_peer_sent_bytes_total{{{DASH}}}[1m])) by (instance)"),
    ("Leader elections per day", f"changes(etcd_server_leader_changes_seen_total{{{DASH}}}[1d])"),
    ("Peer round trip p99", f"histogram_quantile(0.99, sum by (instance, le) (rate(etcd_network_peer_round_trip_time_seconds_bucket{{{DASH}}}[1m])))"),
    ("Proposals failed", f"sum(rate(etcd_server_proposals_failed_total{{{DASH}}}[1m]))"),
    ("Proposals pending", f"sum(etcd_server_proposals_pending{{{DASH}}})"),
    ("Proposals committed", f"sum(rate(etcd_server_proposals_committed_total{{{DASH}}}[1m]))"),
    ("Proposals applied", f"sum(rate(etcd_server_proposals_applied_total{{{DASH}}}[1m]))"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, binary, work, targets):
        self.port = free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n")
            f.write("scrape_configs:\n  - job_name: etcd\n    static_configs:\n")
            f.write(f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(os.path.join(work, "prometheus.log"), "w"), stderr=subprocess.STDOUT)

    def query(self, expression):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        if answer.get("status") != "success":
            raise RuntimeError(f"{expression}: {answer}")
        return answer["data"]["result"]


def describe(result):
    if not result:
        return "no data"
    values = [float(series["value"][1]) for series in result]
    return f"{len(result)} series, {', '.join(f'{v:.4g}' for v in values[:3])}{'…' if len(values) > 3 else ''}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swift-etcd", default=".build/release/swift-etcd")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--load-seconds", type=int, default=150)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="prometheus-mixin-")
    clients = [free_port() for _ in range(3)]
    peers = [free_port() for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peers[i]}" for i in range(3))
    members = []
    for i in range(3):
        members.append(subprocess.Popen(
            [args.swift_etcd, "--name", f"m{i}", "--data-dir", f"{work}/m{i}", "--metrics", "extensive",
             "--listen-client-urls", f"http://127.0.0.1:{clients[i]}", "--advertise-client-urls", f"http://127.0.0.1:{clients[i]}",
             "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
             "--initial-cluster", cluster, "--log-level", "warn"],
            stdout=open(f"{work}/m{i}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
    prometheus = Prometheus(args.prometheus, work, [f"127.0.0.1:{port}" for port in clients])
    endpoints = ",".join(f"127.0.0.1:{port}" for port in clients)
    env = dict(os.environ, ETCDCTL_API="3")
    failures = 0

    def check(ok, text):
        nonlocal failures
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {text}")

    def etcdctl(*arguments, endpoint=endpoints):
        return subprocess.run(["etcdctl", "--endpoints", endpoint, *arguments], env=env, capture_output=True, text=True,
                              timeout=30)

    try:
        deadline = time.time() + 30
        while etcdctl("endpoint", "health").returncode != 0 and time.time() < deadline:
            time.sleep(0.5)
        watch = subprocess.Popen(["etcdctl", "--endpoints", endpoints, "watch", "--prefix", "load/"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lease = etcdctl("lease", "grant", "600").stdout.split()[1]
        keepalive = subprocess.Popen(["etcdctl", "--endpoints", endpoints, "lease", "keep-alive", lease], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"load for {args.load_seconds} s (Prometheus scrapes every second)")
        stop = time.time() + args.load_seconds
        n = 0
        while time.time() < stop:
            etcdctl("put", f"load/{n % 100}", "x" * 100)
            etcdctl("get", "--prefix", "load/", "--keys-only")
            n += 1
        print(f"{n} puts and prefix gets done")

        print("== dashboard panels: each returns data")
        for name, expression in PANELS:
            result = prometheus.query(expression)
            check(bool(result), f"panel {name}: {describe(result)}")
        print("== alert rules on the healthy cluster: not firing, and what they compare returns data")
        for name, full, compared in ALERTS:
            compared_result, firing = prometheus.query(compared), prometheus.query(full)
            check(bool(compared_result) and not firing, f"alert {name}: compares {describe(compared_result)}; "
                                                        f"{'FIRING' if firing else 'not firing'}")

        print("== one member killed")
        os.killpg(members[2].pid, signal.SIGKILL)
        time.sleep(15)
        alerts = {name: prometheus.query(full) for name, full, _ in ALERTS}
        up = prometheus.query(f"up{{{SEL}}} == 0")
        failures_rate = prometheus.query(f"sum(rate(etcd_network_peer_sent_failures_total{{{SEL}}}[120s])) by (instance, To) > 0")
        check(len(up) == 1, f"up == 0 for the killed member: {describe(up)}")
        check(bool(failures_rate), f"the others' send failures to it rise: {describe(failures_rate)}")
        check(bool(alerts["etcdMembersDown"]), f"etcdMembersDown fires: {describe(alerts['etcdMembersDown'])}")
        check(not alerts["etcdInsufficientMembers"], "etcdInsufficientMembers stays off (2 of 3 up)")
        check(not alerts["etcdNoLeader"], "etcdNoLeader stays off")

        print("== a second member killed")
        os.killpg(members[1].pid, signal.SIGKILL)
        time.sleep(15)
        no_leader = prometheus.query(f"etcd_server_has_leader{{{SEL}}} == 0")
        insufficient = prometheus.query(ALERTS[1][1])
        check(bool(no_leader), f"etcdNoLeader fires on the survivor: {describe(no_leader)}")
        check(bool(insufficient), f"etcdInsufficientMembers fires: {describe(insufficient)}")
        watch.terminate()
        keepalive.terminate()
    finally:
        for process in members:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        prometheus.proc.terminate()
        prometheus.proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"prometheus mixin checks: {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
