#!/usr/bin/env bash
# Runs a server ($REAL_BINARY: etcd or swift-etcd) as kubeadm runs etcd: every http:// URL in
# its arguments becomes https://, with client and peer certificates from $TLS_DIR (made by
# scripts/make-test-certs.sh), --client-cert-auth and --peer-client-cert-auth. Interop uses it
# to run the etcdctl-diff scenarios over TLS against both servers with the same certificates.
set -euo pipefail
args=()
for argument in "$@"; do args+=("${argument//http:\/\//https://}"); done
exec "${REAL_BINARY:?}" "${args[@]}" \
  --cert-file "$TLS_DIR/server.pem" --key-file "$TLS_DIR/server-key.pem" --trusted-ca-file "$TLS_DIR/ca.pem" \
  --client-cert-auth \
  --peer-cert-file "$TLS_DIR/peer.pem" --peer-key-file "$TLS_DIR/peer-key.pem" \
  --peer-trusted-ca-file "$TLS_DIR/ca.pem" --peer-client-cert-auth
