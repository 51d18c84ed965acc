#!/usr/bin/env bash
# coordination_check.sh ENDPOINT: etcdctl lock and elect, and the JSON gateway's lock and
# election paths, against one server (the real etcd or swift-etcd) at ENDPOINT (host:port).
# Prints PASS/FAIL per check; exits 1 if any failed. Run by scripts/interop.sh section 10.
set -uo pipefail
endpoint=$1
work=$(mktemp -d)
pids=()
failed=0
trap 'for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done; rm -rf "$work"' EXIT
export ETCDCTL_API=3
ctl=(etcdctl --endpoints "$endpoint")

check() { # check NAME COMMAND...: passes when the command succeeds
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi
}

# within SECONDS FILE PATTERN: true once FILE has a line matching PATTERN.
within() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    grep -qE "$3" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# A holder without a command prints its key and holds until killed; a second waits for it.
"${ctl[@]}" lock --ttl 2 jobs >"$work/holder" 2>&1 &
holder=$!
pids+=($holder)
check "lock without a command prints the held key" within 10 "$work/holder" '^jobs/[0-9a-f]+$'
"${ctl[@]}" lock jobs echo second-holder >"$work/waiter" 2>&1 &
pids+=($!)
sleep 1.5
check "a second lock waits while the first is held" bash -c "! grep -q second-holder '$work/waiter'"
kill -9 "$holder"
check "the lock passes on once the killed holder's lease expires" within 10 "$work/waiter" '^second-holder$'

# An observer sees each leader: alice, then bob once alice's etcdctl is stopped (it resigns).
"${ctl[@]}" elect -l office >"$work/observer" 2>&1 &
pids+=($!)
sleep 0.5
"${ctl[@]}" elect office alice >"$work/alice" 2>&1 &
alice=$!
pids+=($alice)
check "elect prints the campaign key and value once leading" within 10 "$work/alice" '^alice$'
check "elect -l sees alice" within 10 "$work/observer" '^alice$'
"${ctl[@]}" elect office bob >"$work/bob" 2>&1 &
pids+=($!)
sleep 1
check "a second campaign waits" bash -c "! grep -q bob '$work/bob'"
kill -TERM "$alice"
check "bob leads once alice resigns" within 10 "$work/bob" '^bob$'
check "elect -l sees bob after alice" within 10 "$work/observer" '^bob$'
check "the observer saw office/<lease> alice then office/<lease> bob" \
  python3 -c "import re,sys; lines=open('$work/observer').read().split(); \
sys.exit(not (len(lines)==4 and re.fullmatch(r'office/[0-9a-f]+',lines[0]) and lines[1]=='alice' and lines[3]=='bob'))"

# The gateway's paths for the same services.
post() { curl -sS -X POST "http://$endpoint$1" -d "$2"; }
lease=$(post /v3/lease/grant '{"TTL":60}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
check "gateway /v3/lock/lock answers the key" \
  bash -c "post() { curl -sS -X POST \"http://$endpoint\$1\" -d \"\$2\"; }; post /v3/lock/lock '{\"name\":\"Z3c=\",\"lease\":\"$lease\"}' \
  | python3 -c 'import json,sys,base64; k=base64.b64decode(json.load(sys.stdin)[\"key\"]).decode(); sys.exit(not k.startswith(\"gw/\"))'"
post /v3/election/campaign "{\"name\":\"ZWw=\",\"lease\":\"$lease\",\"value\":\"djE=\"}" >"$work/campaign"
check "gateway /v3/election/campaign answers the leader key" grep -q '"leader"' "$work/campaign"
check "gateway /v3/election/leader answers the value" \
  bash -c "curl -sS -X POST 'http://$endpoint/v3/election/leader' -d '{\"name\":\"ZWw=\"}' | grep -q '\"value\":\"djE=\"'"
exit "$failed"
