#!/usr/bin/env bash
# scripts/baremetal/build-ramdisk.sh [outdir] — the bare-metal ramdisks a PXE server serves
# (vrouteragent --baremetal-images <outdir>): vmlinuz and initrd of the test guest image
# (scripts/guest-image/build.sh: busybox, Debian's kernel and modules) with the test guest's
# /etc/init.d/rcS replaced, as a second cpio archive appended (the kernel unpacks both, the later
# file wins): inspect.img reports the hardware and powers off. Idempotent, a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-scripts/baremetal/out}
G=scripts/guest-image/out
[ -f "$G/initrd.img" ] || scripts/guest-image/build.sh >/dev/null
mkdir -p "$OUT"
W=$(mktemp -d /tmp/tstack-ramdisk.XXXXXX); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/etc/init.d"
install -m 0755 scripts/baremetal/inspect-rcS "$W/etc/init.d/rcS"
(cd "$W" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/overlay.gz"
cat "$G/initrd.img" "$W/overlay.gz" > "$OUT/inspect.img.tmp" && mv "$OUT/inspect.img.tmp" "$OUT/inspect.img"
cp "$G/vmlinuz" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$OUT"
