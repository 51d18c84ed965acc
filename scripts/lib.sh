# Shell helpers shared by the scripts (source it; it defines functions only).

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_port PORT [SECONDS]: true once something accepts connections on 127.0.0.1:PORT.
wait_for_port() {
  local deadline=$((SECONDS + ${2:-30}))
  while ((SECONDS < deadline)); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.5)" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1 after ${2:-30} s" >&2
  return 1
}

# start_member BINARY NAME DIR CLIENT_PORT PEER_PORT LOG [FLAG...]: etcd, swift-etcd (or a
# wrapper such as scripts/with-tls.sh) as a one-member cluster on loopback, with any further
# flags, in the background (pid in $!).
start_member() {
  "$1" --name "$2" --data-dir "$3" \
    --listen-client-urls "http://127.0.0.1:$4" --advertise-client-urls "http://127.0.0.1:$4" \
    --listen-peer-urls "http://127.0.0.1:$5" --initial-advertise-peer-urls "http://127.0.0.1:$5" \
    --initial-cluster "$2=http://127.0.0.1:$5" "${@:7}" >"$6" 2>&1 &
}

# start_etcd NAME DIR CLIENT_PORT PEER_PORT LOG: the real etcd as a one-member cluster on
# loopback, in the background (its pid is in $!).
start_etcd() {
  start_member etcd "$@"
}
