#!/bin/bash
# Project copy of ../shared/notes/ceph/ceph-down.sh (used by test/harness/ceph.ts).
# Stop only the daemons ceph-up.sh started (PIDs from $D/run/*.pid), then delete $D.
# Default: SIGKILL all at once (throwaway cluster, instant). GRACEFUL=1: SIGTERM osd -> mgr -> mon.
D=${CEPH_PROBE_DIR:-${TMPDIR:-/tmp}/ceph-test}
ours() { [ -r /proc/$1/cmdline ] && tr '\0' ' ' </proc/$1/cmdline | grep -q -- "-c $D/ceph.conf"; }
pids=()
for n in osd.0 mgr.x mon.a; do
  f=$D/run/$n.pid; [ -f "$f" ] || continue; pid=$(cat "$f")
  ours "$pid" || continue   # guard against PID reuse / already dead
  if [ "${GRACEFUL:-0}" = 1 ]; then
    kill -TERM "$pid"; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  else
    kill -KILL "$pid"
  fi
  pids+=("$pid"); echo "stopped $n pid $pid"
done
for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
rm -rf "$D"
