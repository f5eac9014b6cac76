#!/bin/bash
# Project copy of ../shared/notes/ceph/ceph-up.sh (used by test/harness/ceph.ts); adds POOL (default vms).
# Throwaway single-node Ceph (Pacific 16.2, Debian 12) in userspace, everything under $D,
# loopback only, no systemd, no cephadm, no kernel modules.
# Usage: ceph-up.sh            -> prints timings, leaves daemons running, PIDs in $D/run/*.pid
set -euo pipefail
D=${CEPH_PROBE_DIR:-${TMPDIR:-/tmp}/ceph-test}
OSD_SIZE_BYTES=${OSD_SIZE_BYTES:-10737418240}   # 10 GiB sparse file
WITH_MGR=${WITH_MGR:-1}
MON_V2_PORT=${MON_V2_PORT:-3300}; MON_V1_PORT=${MON_V1_PORT:-6789}   # change both to run clusters side by side
MONADDR="[v2:127.0.0.1:$MON_V2_PORT,v1:127.0.0.1:$MON_V1_PORT]"
CONF=$D/ceph.conf
T0=$(date +%s.%N)
ts() { printf '[%6.2fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
C() { ceph -c "$CONF" --connect-timeout 15 "$@"; }

if [ -e "$D" ]; then echo "$D exists; run ceph-down.sh first" >&2; exit 1; fi
mkdir -p "$D"/{mon,osd,mgr,run,log,crash}
FSID=$(uuidgen)

cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon initial members = a
mon host = $MONADDR
public network = 127.0.0.0/8
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
run dir = $D/run
crash dir = $D/crash
log file = $D/log/\$cluster-\$name.log
# the mon's cluster/audit log defaults to /var/log/ceph/ceph{,.audit}.log
mon cluster log file = default=$D/log/\$cluster.\$channel.log cluster=$D/log/\$cluster.log
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
# allow RBD clone v2 (no 'snap protect' needed); all Pacific/QEMU-7.2 librbd clients are >= mimic
mon osd initial require min compat client = mimic
mon warn on pool no redundancy = false
# root fs here is ~30% free; default warn threshold is 30% -> flaky MON_DISK_LOW
mon data avail warn = 2
mon data avail crit = 1
# only modules we need; default "restful iostat nfs"
mgr initial modules = iostat

[mon]
mon data = $D/mon/\$cluster-\$id

[mgr]
mgr data = $D/mgr/\$cluster-\$id

[osd]
osd data = $D/osd/\$cluster-\$id
osd objectstore = bluestore
# bluestore on a plain (sparse) file: mkfs creates \$osd_data/block of this size
bluestore block create = true
bluestore block size = $OSD_SIZE_BYTES
osd memory target = 1073741824
bluestore fsck on mkfs = false

[client]
keyring = $D/ceph.client.admin.keyring
# unique per-process admin socket so concurrent clients (qemu, rbd) don't collide
admin socket = $D/run/\$cluster-\$name.\$pid.\$cctid.asok
EOF
if [ "${FAST:-1}" = 1 ]; then
  # test-speed knobs: each mon command otherwise waits up to paxos_propose_interval (1 s);
  # daemons report stats to the mgr every mgr_stats_period (5 s)
  sed -i '/^\[global\]/a paxos propose interval = 0.1\nmgr stats period = 1\nmgr tick period = 1' "$CONF"
fi
ts "conf written (fsid $FSID)"

# --- keys + monmap + mon ---
ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$D/ceph.client.admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$D/mon.keyring" --import-keyring "$D/ceph.client.admin.keyring" >/dev/null
monmaptool --create --addv a "$MONADDR" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
ts "mon mkfs done"
ceph-mon -c "$CONF" -i a -f >"$D/log/mon.a.stdout" 2>&1 &
echo $! > "$D/run/mon.a.pid"
for i in $(seq 1 60); do C mon stat >/dev/null 2>&1 && break; sleep 0.5; done
ts "mon up: $(C mon stat)"

# --- mgr (needed for ceph df / PG stats / HEALTH_OK) ---
if [ "$WITH_MGR" = 1 ]; then
  mkdir -p "$D/mgr/ceph-x"
  C auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' > "$D/mgr/ceph-x/keyring"
  ceph-mgr -c "$CONF" -i x -f >"$D/log/mgr.x.stdout" 2>&1 &
  echo $! > "$D/run/mgr.x.pid"
  ts "mgr started"
fi

# --- osd on a sparse file (bluestore) ---
OSD_UUID=$(uuidgen)
OSD_SECRET=$(ceph-authtool --gen-print-key)
printf '{"cephx_secret": "%s"}' "$OSD_SECRET" > "$D/osd-secrets.json"
OSD_ID=$(C osd new "$OSD_UUID" -i "$D/osd-secrets.json")
rm -f "$D/osd-secrets.json"
mkdir -p "$D/osd/ceph-$OSD_ID"
ceph-authtool --create-keyring "$D/osd/ceph-$OSD_ID/keyring" --name "osd.$OSD_ID" --add-key "$OSD_SECRET" >/dev/null
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd.$OSD_ID.mkfs" 2>&1
ts "osd.$OSD_ID mkfs done"
ceph-osd -c "$CONF" -i "$OSD_ID" -f >"$D/log/osd.$OSD_ID.stdout" 2>&1 &
echo $! > "$D/run/osd.$OSD_ID.pid"
for i in $(seq 1 120); do
  [ "$(C osd stat -f json | python3 -c 'import json,sys;print(json.load(sys.stdin)["num_up_osds"])')" = 1 ] && break
  sleep 0.5
done
ts "osd up: $(C osd stat)"

# --- pool ---
POOL=${POOL:-vms}
C osd pool create "$POOL" 8 8 replicated >/dev/null 2>&1
C osd pool set "$POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1 || true
rbd -c "$CONF" pool init "$POOL"
ts "pool $POOL created + rbd pool init"

if [ "$WITH_MGR" != 1 ]; then ts "ready (no mgr: health/pg stats unavailable)"; exit 0; fi
# HEALTH_OK alone is not enough: right after mgr start PGs are 'unknown' and health is still OK
for i in $(seq 1 240); do
  h=$(C health 2>/dev/null || true)
  if [ "$h" = HEALTH_OK ] && C pg stat -f json 2>/dev/null | python3 -c '
import json,sys; d=json.load(sys.stdin); d=d.get("pg_summary",d)
t=d["num_pgs"]; c=sum(x["num"] for x in d["num_pg_by_state"] if x["name"]=="active+clean")
sys.exit(0 if t>0 and t==c else 1)'; then break; fi
  sleep 0.5
done
ts "ready: $(C health) / $(C pg stat)"
