#!/usr/bin/env bash
# scripts/baremetal/build-ramdisk.sh [outdir] — the bare-metal ramdisks a PXE server serves
# (vrouteragent --baremetal-images <outdir>): vmlinuz and initrd of the test guest image
# (scripts/guest-image/build.sh: busybox, Debian's kernel and modules) with the test guest's
# /etc/init.d/rcS replaced, as a second cpio archive appended (the kernel unpacks both, the later
# file wins): inspect.img reports the hardware and powers off; deploy.img writes an image and a
# config drive to the disk (or wipes it) as the PXE server's instructions say. Idempotent, a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-scripts/baremetal/out}
G=scripts/guest-image/out
[ -f "$G/initrd.img" ] || scripts/guest-image/build.sh >/dev/null
mkdir -p "$OUT"
W=$(mktemp -d /tmp/tstack-ramdisk.XXXXXX); trap 'rm -rf "$W"' EXIT
for r in inspect deploy; do
  rm -rf "$W/$r"; mkdir -p "$W/$r/etc/init.d"
  install -m 0755 "scripts/baremetal/$r-rcS" "$W/$r/etc/init.d/rcS"
  (cd "$W/$r" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/$r.gz"
  cat "$G/initrd.img" "$W/$r.gz" > "$OUT/$r.img.tmp" && mv "$OUT/$r.img.tmp" "$OUT/$r.img"
done
cp "$G/vmlinuz" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$OUT"
