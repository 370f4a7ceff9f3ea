#!/usr/bin/env bash
# A throwaway one-node Ceph cluster with its S3 gateway (radosgw), on loopback only:
# the real S3 server the test suite and benchmarks/bench_remote.py run against,
# besides moto.
#
#   ceph-s3.sh start DIR PORT   # prints AWS_* env lines once S3 answers on 127.0.0.1:PORT
#   ceph-s3.sh stop DIR         # stops every daemon it started (by pid file), keeps DIR
#
# One mon (msgr2 only), one OSD on memstore (data in RAM, at most 4 GiB), radosgw
# (beast) on 127.0.0.1:PORT, auth none between the daemons, pool size 1, no mgr
# (RGW I/O does not need one). Up in a few seconds. Everything (conf, data, logs,
# sockets, pid files) is under DIR; nothing in /etc/ceph, no systemd.
# Needs Debian's ceph-mon ceph-osd radosgw (16.x; they bring ceph and radosgw-admin).
# S3 keys of the one user: CEPH_S3_ACCESS_KEY / CEPH_S3_SECRET_KEY, or test defaults.
# CEPH_S3_TIMEOUT: seconds for the whole bring-up (default 120).
# CEPH_S3_VERBOSE=1: print the time each step took on stderr.
set -euo pipefail

die() { echo "ceph-s3: $*" >&2; exit 1; }

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

port_free() {  # as radosgw binds (SO_REUSEADDR): fails only if something listens there
    python3 -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $1)); s.listen()" 2>/dev/null
}

ceph_() { timeout 30 ceph -c "$DIR/ceph.conf" --connect-timeout 10 "$@"; }

wait_for() {  # wait_for WHAT COMMAND... : retry until the command succeeds or the deadline
    local what=$1; shift
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS > DEADLINE )); then
            echo "ceph-s3: timed out waiting for $what; errors and last log lines:" >&2
            grep -h -E "ERROR|failed|error" "$DIR"/log/*.log 2>/dev/null | tail -n 10 >&2 || true
            tail -n 5 "$DIR"/log/*.log >&2 2>/dev/null || true
            stop_all; exit 1
        fi
        sleep 0.3
    done
}

ours() {  # ours PIDFILE: the pid in it, if that process is a daemon of this cluster
    local pid
    [[ -s $1 ]] && pid=$(cat "$1") || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/ceph.conf" || return 1
    echo "$pid"
}

stop_daemons() {  # stop_daemons NAME...: TERM them together, wait, KILL after 15 s
    local name pid pids=()
    for name; do
        pid=$(ours "$DIR/run/$name.pid") && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    for name; do rm -f "$DIR/run/$name.pid"; done
}

# one at a time, gateway first: each waits for the next one down (the OSD 5 s for a stopping mon)
stop_all() { stop_daemons client.rgw; stop_daemons osd.0; stop_daemons mon.a; }

step() { [[ -z ${CEPH_S3_VERBOSE:-} ]] || echo "ceph-s3: ${SECONDS}s $*" >&2; }

s3_answers() {  # an anonymous GET / answers 200 (an empty bucket list)
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/', timeout=2)"
}

osd_up() { [[ $(ceph_ osd stat -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])') == 1 ]]; }

start() {
    [[ -e $DIR/ceph.conf ]] && die "$DIR already holds a cluster (stop it and remove the directory)"
    port_free "$PORT" || die "127.0.0.1:$PORT is in use"
    mkdir -p "$DIR"/{run,log,mon.a,osd.0,crash}
    DIR=$(cd "$DIR" && pwd)
    local monport fsid osd_uuid
    monport=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    cat > "$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
crash dir = $DIR/crash
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
log to stderr = false
err to stderr = true
keyring = /dev/null
client mount timeout = 30
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd max pg per osd hard ratio = 10

[mon]
mon data = $DIR/mon.\$id
mon data avail warn = 2
mon data avail crit = 1
# one Paxos round per change (each RGW pool is two): 1 s by default
paxos propose interval = 0.05

[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd crush update on start = true
osd op num shards = 1
osd op num threads per shard = 2

[client.rgw]
# radosgw defaults to cephx with a "secure" mon connection, which auth none cannot give
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw thread pool size = 32
rgw dns name = 127.0.0.1
rgw enable usage log = false
# lifecycle workers sleep 5 s at a time and hold up shutdown; no test needs lifecycle rules
rgw enable lc threads = false
rgw data = $DIR/rgw
EOF
    DEADLINE=$(( SECONDS + ${CEPH_S3_TIMEOUT:-120} ))
    local c=(-c "$DIR/ceph.conf")

    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" \
        "$DIR/monmap" >/dev/null
    step "mkfs mon"
    ceph-mon "${c[@]}" -i a --mkfs --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.out" 2>&1 \
        || { cat "$DIR/log/mkfs-mon.out" >&2; die "ceph-mon --mkfs failed"; }
    ceph-mon "${c[@]}" -i a 2>>"$DIR/log/mon.a.stderr" || die "ceph-mon did not start (see $DIR/log/mon.a.log)"
    wait_for "the monitor" ceph_ mon stat

    step "mon up"
    ceph_ osd new "$osd_uuid" 0 >/dev/null
    step "osd created"
    ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.out" 2>&1 \
        || { cat "$DIR/log/mkfs-osd.out" >&2; stop_all; die "ceph-osd --mkfs failed"; }
    ceph-osd "${c[@]}" -i 0 2>>"$DIR/log/osd.0.stderr" || { stop_all; die "ceph-osd did not start (see $DIR/log/osd.0.log)"; }
    wait_for "the OSD to be up" osd_up

    step "osd up"
    mkdir -p "$DIR/rgw"
    radosgw "${c[@]}" -n client.rgw 2>>"$DIR/log/client.rgw.stderr" || { stop_all; die "radosgw did not start"; }
    wait_for "radosgw on 127.0.0.1:$PORT" s3_answers

    step "rgw answers"
    local key=${CEPH_S3_ACCESS_KEY:-CEPHS3TESTACCESSKEY0}
    local secret=${CEPH_S3_SECRET_KEY:-ceph-s3-test-secret-key-0123456789}
    radosgw-admin "${c[@]}" user create --uid tester --display-name tester \
        --access-key "$key" --secret-key "$secret" >"$DIR/log/user.json" 2>"$DIR/log/user.err" \
        || { cat "$DIR/log/user.err" >&2; stop_all; die "radosgw-admin user create failed"; }
    step "user created"
    cat <<EOF
AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
AWS_DEFAULT_REGION=us-east-1
EOF
}

cmd=${1:-}; DIR=${2:-}
case $cmd in
    start)
        [[ -n $DIR && -n ${3:-} ]] || die "usage: $0 start DIR PORT"
        PORT=$3; start ;;
    stop)
        [[ -n $DIR ]] || die "usage: $0 stop DIR"
        [[ -d $DIR/run ]] || die "$DIR has no cluster"
        DIR=$(cd "$DIR" && pwd)
        stop_all ;;
    *) die "usage: $0 start DIR PORT | stop DIR" ;;
esac
