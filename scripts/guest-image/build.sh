#!/bin/sh
# scripts/guest-image/build.sh - build tstack's tiny "cloud-like" x86_64 test guest from
# Debian 12 packages only (apt-get download; no other network, no root needed for the image
# itself, no loop devices, no mounting).
#
# Outputs (in $OUT, default scripts/guest-image/out; work/cache dir $WORK, default
# scripts/guest-image/work):
#   tinyguest.qcow2  MBR + syslinux + FAT16 partition {vmlinuz, initrd.img}   (BIOS boot)
#   tinyguest.iso    isolinux El Torito ISO (isohybrid MBR, also boots as a disk)
#   vmlinuz, initrd.img  (for -kernel/-initrd experiments)
#
# Idempotent: when all four outputs exist and are newer than this script, it does nothing
# (FORCE=1 rebuilds).  A warm rebuild (debs cached in $WORK/debs) takes ~2-3 s.
#
# The whole OS lives in the initramfs (busybox-static + dropbear + a few virtio/ata
# modules); the disk is only the boot medium.  Guest behaviour (see /etc/init.d/rcS):
#   load modules -> udhcpc on eth0 -> NoCloud config drive (label cidata, iso9660/vfat)
#   or EC2-style http://169.254.169.254/latest/... -> hostname + authorized_keys ->
#   dropbear on :22 -> user-data script (#!...) / #cloud-config runcmd ->
#   "TINYGUEST-READY ..." line on ttyS0; ACPI power button -> clean poweroff.
#   Login: root with the injected key; on the consoles (tty1, ttyS0) with a password from
#   #cloud-config 'password:' or 'chpasswd: list: |' root:pw (or a '$6$…' hash; vendor-data's list too).
#   network-config: only a static address for eth0 that DHCP did not give is applied. Not supported:
#   MIME multipart user-data, write_files, users:.
#
# Build host needs (scripts/setup installs them): mtools dosfstools syslinux syslinux-common
#   isolinux xorriso qemu-utils cpio zstd   (zstd optional: falls back to gzip)
# Facts behind the choices: see docs in the team handbook (guest-image notes).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
WORK=${WORK:-$HERE/work}
OUT=${OUT:-$HERE/out}
if [ "${FORCE:-0}" != 1 ]; then
    fresh=1
    for f in tinyguest.qcow2 tinyguest.iso vmlinuz initrd.img; do
        [ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$SELF" ] || { fresh=0; break; }
    done
    if [ $fresh = 1 ]; then
        echo "build.sh: up to date ($OUT; FORCE=1 rebuilds)"
        ls -l "$OUT"
        exit 0
    fi
fi

# kernel ABI: 'auto' = whatever linux-image-cloud-amd64 currently depends on (the
# security archive only keeps the newest ABI); or pin, e.g. KVER=6.1.0-56-cloud-amd64
# (auto reuses an already downloaded kernel deb unless REFRESH=1; apt-cache costs ~1 s)
T0=$(date +%s.%N)
KVER=${KVER:-auto}
[ "$KVER" = auto ] && KVER_PINNED=0 || KVER_PINNED=1
if [ "$KVER" = auto ] && [ "${REFRESH:-0}" != 1 ]; then
    KVER=$(ls "$WORK"/debs/linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -1 |
           sed -n 's|.*/linux-image-\(.*-cloud-amd64\)_.*|\1|p')
    [ -n "$KVER" ] || KVER=auto
fi
if [ "$KVER" = auto ]; then
    KVER=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
           sed -n 's/^ *Depends: linux-image-\([0-9].*-cloud-amd64\)$/\1/p' | head -1)
    [ -n "$KVER" ] || KVER=6.1.0-56-cloud-amd64
fi
COMP=${COMP:-$(command -v zstd >/dev/null && echo zstd || echo gzip)}  # initramfs: zstd|gzip|lz4|xz|none
BUILD_ISO=${BUILD_ISO:-1}
QCOW_COMPRESS=${QCOW_COMPRESS:-0}  # 1 = qemu-img convert -c (smaller file, same boot speed)
ROOT_PW_HASH=${ROOT_PW_HASH:-'*'}  # crypt(3) hash for root console login; '*' = locked
SYSLINUX_EXTRA=${SYSLINUX_EXTRA:-} # e.g. "SERIAL 0 115200" to see the bootloader on ttyS0
# quiet: less UART traffic; mitigations=off + cryptomgr.notests: ~0.5-0.8 s less kernel
# boot under TCG (test image only!).  no_timer_check: under TCG on a loaded host the kernel can
# panic with "IO-APIC + timer doesn't work" (seen in the vpc e2e). The last console= is /dev/console (ttyS0).
CMDLINE=${CMDLINE:-"console=tty0 console=ttyS0,115200n8 quiet mitigations=off cryptomgr.notests edd=off no_timer_check"}
MODULES=${MODULES:-"virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng ata_piix sr_mod isofs vfat nls_cp437 nls_utf8 nls_ascii button evdev"}
DEBS="linux-image-$KVER busybox-static dropbear-bin libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1 libc6"

SYSLINUX_MBR=/usr/lib/syslinux/mbr/mbr.bin
ISOLINUX_BIN=/usr/lib/ISOLINUX/isolinux.bin
ISOHDPFX=/usr/lib/ISOLINUX/isohdpfx.bin
LDLINUX_C32=/usr/lib/syslinux/modules/bios/ldlinux.c32

die() { echo "build.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "missing $1 (apt-get install $2)"; }
need apt-get apt; need dpkg-deb dpkg; need cpio cpio; need mkfs.fat dosfstools
need mcopy mtools; need syslinux syslinux; need qemu-img qemu-utils
[ -f $SYSLINUX_MBR ] && [ -f $LDLINUX_C32 ] || die "missing syslinux-common"
if [ "$BUILD_ISO" = 1 ]; then need xorriso xorriso; [ -f $ISOLINUX_BIN ] || die "missing isolinux"; fi

mkdir -p "$WORK/debs" "$OUT"
# several test runs may call us at once: one build at a time; outputs are renamed into place
exec 9>"$WORK/.lock"
flock 9
if [ "${FORCE:-0}" != 1 ] && [ -s "$OUT/initrd.img" ] && [ "$OUT/initrd.img" -nt "$SELF" ] &&
   [ -s "$OUT/tinyguest.qcow2" ] && [ "$OUT/tinyguest.qcow2" -nt "$SELF" ]; then
    echo "build.sh: built by a concurrent run"; exit 0
fi
P=$WORK/pkgroot                     # all debs unpacked here (cached)
R=$WORK/rootfs                      # initramfs staging tree (rebuilt every time)
B=$WORK/boot                        # boot files staging

# ---------------------------------------------------------------- 1. packages
cd "$WORK/debs"
missing=""
for p in $DEBS; do ls ${p}_*.deb >/dev/null 2>&1 || missing="$missing $p"; done
fetch() { apt-get download "$@" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true; }
if [ -n "$missing" ]; then
    fetch $missing
    still=""
    for p in $missing; do ls ${p}_*.deb >/dev/null 2>&1 || still="$still $p"; done
    # stale or missing package lists (fresh machine, or the kernel ABI moved on): refresh once
    if [ -n "$still" ] && [ "$(id -u)" = 0 ]; then
        echo "build.sh: apt-get update (could not download:$still)" >&2
        apt-get update -qq >/dev/null 2>&1 || true
        case "$still" in *linux-image-*)
            if [ "${KVER_PINNED:-0}" != 1 ]; then
                nk=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                     sed -n 's/^ *Depends: linux-image-\([0-9].*-cloud-amd64\)$/\1/p' | head -1)
                if [ -n "$nk" ] && [ "$nk" != "$KVER" ]; then
                    still=$(echo "$still" | sed "s/linux-image-$KVER/linux-image-$nk/"); KVER=$nk
                    DEBS="linux-image-$KVER busybox-static dropbear-bin libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1 libc6"
                fi
            fi ;;
        esac
        fetch $still
    fi
fi
mkdir -p "$P"
for p in $DEBS; do
    deb=$(ls ${p}_*.deb 2>/dev/null | tail -1)
    [ -n "$deb" ] || die "could not download $p (apt-get update? KVER=$KVER)"
    [ -e "$P/.stamp.$deb" ] && continue
    dpkg-deb -x "$deb" "$P"
    touch "$P/.stamp.$deb"
done
cd "$WORK"

# ---------------------------------------------------------------- 2. rootfs tree
rm -rf "$R" "$B"; mkdir -p "$R" "$B"
for d in bin sbin usr/bin usr/sbin etc/init.d etc/acpi/PWRF etc/dropbear proc sys dev run tmp \
         root var/log var/run mnt/cidata lib/x86_64-linux-gnu lib64 usr/share/udhcpc \
         lib/modules/$KVER; do mkdir -p "$R/$d"; done
chmod 1777 "$R/tmp"; chmod 700 "$R/root"

# busybox-static + applet symlinks
cp "$P/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list-full); do
    [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
ln -s bin/busybox "$R/init"         # kernel runs /init -> busybox init (reads /etc/inittab)

# dropbear (dynamically linked) + its shared libraries, taken from the unpacked debs
cp "$P/usr/sbin/dropbear" "$R/usr/sbin/"
cp "$P/usr/bin/dropbearkey" "$R/usr/bin/"
for lib in ld-linux-x86-64.so.2 libc.so.6 libcrypt.so.1 libz.so.1 libtomcrypt.so.1 \
           libtommath.so.1 libgmp.so.10; do
    f=$(find "$P/lib" "$P/usr/lib" -name "$lib" | head -1)
    [ -n "$f" ] || die "library $lib not found in unpacked debs"
    cp -L "$f" "$R/lib/x86_64-linux-gnu/$lib"
done
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"
# sanity check: every NEEDED lib of dropbear resolves inside the staged tree
if "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$R/lib/x86_64-linux-gnu" \
        --list "$R/usr/sbin/dropbear" | grep -q 'not found'; then
    die "dropbear has unresolved libraries"
fi

# kernel modules: resolve 'depends=' recursively, copy, busybox depmod
KM=$P/lib/modules/$KVER
seen=" "
add_mod() {
    case "$seen" in *" $1 "*) return;; esac
    seen="$seen$1 "
    f=$(find "$KM/kernel" \( -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" \) | head -1)
    [ -n "$f" ] || { grep -q "/$1.ko\$" "$KM/modules.builtin" && return; die "module $1 not found"; }
    rel=${f#$KM/}
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
    cp "$f" "$R/lib/modules/$KVER/$rel"
    for d in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr , ' '); do add_mod "$d"; done
}
for m in $MODULES; do add_mod "$m"; done
cp "$KM/modules.builtin" "$KM/modules.order" "$R/lib/modules/$KVER/" 2>/dev/null || true
"$R/bin/busybox" depmod -b "$R" "$KVER"

# ---------------------------------------------------------------- 3. /etc
cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
echo "root:$ROOT_PW_HASH:19000:0:99999:7:::" > "$R/etc/shadow"; chmod 600 "$R/etc/shadow"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$R/etc/group"
printf '/bin/sh\n/bin/ash\n' > "$R/etc/shells"
printf '127.0.0.1\tlocalhost\n' > "$R/etc/hosts"
echo tinyguest > "$R/etc/hostname"
printf 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nPS1='"'"'\\h:\\w\\$ '"'"'\n' > "$R/etc/profile"
printf 'NAME=tinyguest\nID=tinyguest\nPRETTY_NAME="tinyguest (busybox+dropbear, Debian %s kernel)"\n' "$KVER" > "$R/etc/os-release"

cat > "$R/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
tty1::respawn:/sbin/getty 38400 tty1
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
EOF

# ACPI power button -> busybox acpid maps KEY_POWER to /etc/acpi/PWRF/00000080
# (fast path: run the shutdown script, then poweroff -f; busybox init's own
#  'poweroff' path adds 2 s of fixed SIGTERM/SIGKILL sleeps; both are clean here
#  because the root fs is the initramfs - nothing to unmount)
printf '#!/bin/sh\n/etc/init.d/rcK\nexec /sbin/poweroff -f\n' > "$R/etc/acpi/PWRF/00000080"
chmod 755 "$R/etc/acpi/PWRF/00000080"

cat > "$R/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# minimal udhcpc hook: address, default route, resolv.conf
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
    if [ -n "$staticroutes" ]; then        # option 121 (e.g. OpenStack metadata route)
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$1" = 0.0.0.0/0 ]; then ip route replace default via "$2" dev "$interface"
            else ip route replace "$1" via "$2" dev "$interface"; fi
            shift 2
        done
    else
        for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    fi
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$ip" > /run/ipv4
    ;;
esac
exit 0
EOF
chmod 755 "$R/usr/share/udhcpc/default.script"

cat > "$R/etc/init.d/rcS" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
exec >/dev/console 2>&1 </dev/null
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "tinyguest[$(up)]: $*"; }
log "rcS start (kernel+initramfs done)"
# ssh host key first, in the background: the first getrandom() blocks until the
# CRNG is seeded, which takes ~1 s of jitter entropy (256 timer ticks at HZ=250)
# when the VM has no RDRAND/virtio-rng - overlap that with everything below.
dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key > /run/hostkey.txt 2>&1 &
KEYPID=$!
hostname -F /etc/hostname
ip link set lo up

# --- drivers (the Debian cloud kernel has virtio/ata/isofs/button as modules)
# IDE/ATAPI CD-ROM probing (i440fx '-cdrom' / libvirt bus='ide') takes ~0.8 s under
# TCG, mostly reset delays: start it first, in the background, overlapping virtio+DHCP.
modprobe -a ata_piix sr_mod isofs vfat nls_cp437 nls_utf8 nls_ascii 2>/dev/null &
ATAPID=$!
modprobe -a virtio_pci virtio_net virtio_blk virtio_rng button evdev 2>/dev/null
acpid -l /dev/null                    # ACPI power button -> /etc/acpi/PWRF/00000080
log "virtio modules loaded"

# --- network: DHCP on eth0 (udhcpc daemonizes after the lease, keeps renewing)
if [ -e /sys/class/net/eth0 ]; then
    udhcpc -i eth0 -s /usr/share/udhcpc/default.script -t 10 -T 1 -b -p /run/udhcpc.eth0.pid \
        -x hostname:"$(hostname)" >/dev/null 2>&1
fi
IP=$(cat /run/ipv4 2>/dev/null)
log "eth0 ip=${IP:-none}"

# --- datasource: NoCloud config drive (label cidata), else EC2-style metadata service
D=/run/cloud; mkdir -p $D
DS=none
wait $ATAPID
modprobe virtio_scsi 2>/dev/null      # after ata: both need scsi_mod (avoid racing loads)
dev=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null)
if [ -n "$dev" ] && mount -o ro "$dev" /mnt/cidata 2>/dev/null; then
    for f in meta-data user-data vendor-data network-config; do
        [ -f /mnt/cidata/$f ] && cp /mnt/cidata/$f $D/$f
    done
    umount /mnt/cidata
    DS="nocloud:$dev"
elif [ -n "$IP" ]; then
    MD=http://169.254.169.254/latest
    # NB: busybox 1.35 (bookworm) 'wget -T N' segfaults - use the timeout applet instead
    get() { timeout "${3:-3}" wget -q -O "$2" "$MD/$1" 2>/dev/null || { r=$?; rm -f "$2"; return $r; }; }
    # no route to the link-local metadata address (e.g. DHCP gave no router)? try on-link
    ip route get 169.254.169.254 >/dev/null 2>&1 || ip route add 169.254.169.254/32 dev eth0
    get user-data $D/user-data
    if [ $? -le 1 ]; then   # 0 ok, 1 HTTP error/refused (fast); 143 = timed out: give up
        get meta-data/local-hostname $D/hostname || get meta-data/hostname $D/hostname
        get meta-data/public-keys/0/openssh-key $D/keys
    fi
    for f in user-data hostname keys; do [ -s $D/$f ] && DS="ec2:169.254.169.254"; done
fi
log "datasource=$DS"

# --- parse: meta-data (local-hostname, public-keys), #cloud-config (hostname,
#     ssh_authorized_keys, runcmd), or a '#!' user-data script
yaml_list() {  # print items of a top-level block list "$1:" from file $2
    awk -v key="$1:" '
        /^[^ \t#-][^:]*:/ { inl = ($1 == key); next }
        inl && /^[ \t]*-[ \t]+/ { sub(/^[ \t]*-[ \t]+/, "");
            if ($0 ~ /^".*"[ \t]*$/ || $0 ~ /^\047.*\047[ \t]*$/) { sub(/[ \t]*$/, ""); $0 = substr($0, 2, length($0) - 2) }
            print }' "$2"
}
yaml_chpasswd() {  # 'user:password' lines of "chpasswd: list:" (a '|' block or '- ' items) in $1
    awk '
        /^[^ \t#]/ { inc = ($0 ~ /^chpasswd:[ \t]*$/); inl = 0; next }
        !inc || /^[ \t]*(#.*)?$/ { next }
        inl { match($0, /^[ \t]*/); if (RLENGTH > li) { s = $0; sub(/^[ \t]*(-[ \t]+)?/, "", s); sub(/[ \t]*$/, "", s); print s; next }; inl = 0 }
        /^[ \t]+list:/ { match($0, /^[ \t]*/); li = RLENGTH; inl = 1 }' "$1"
}
yaml_val() { sed -n "s/^$1:[ \t]*[\"']\{0,1\}\([^\"']*\)[\"']\{0,1\}[ \t]*\$/\1/p" "$2" | head -1; }
HN=""
if [ -f $D/meta-data ]; then
    HN=$(yaml_val local-hostname $D/meta-data)
    yaml_list public-keys $D/meta-data >> $D/keys
fi
[ -f $D/hostname ] && HN=$(head -1 $D/hostname)
if [ -f $D/user-data ]; then
    case "$(head -c 64 $D/user-data)" in
    '#cloud-config'*)
        h=$(yaml_val hostname $D/user-data); [ -n "$h" ] && HN=$h
        PW=$(yaml_val password $D/user-data)
        yaml_chpasswd $D/user-data > $D/chpasswd
        yaml_list ssh_authorized_keys $D/user-data >> $D/keys
        yaml_list runcmd $D/user-data > $D/runcmd ;;
    '#!'*) cp $D/user-data $D/user-script; chmod 700 $D/user-script ;;
    esac
fi
# vendor-data (#cloud-config): its chpasswd list too (bare metal puts the root password hash there)
case "$(head -c 64 $D/vendor-data 2>/dev/null)" in '#cloud-config'*) yaml_chpasswd $D/vendor-data >> $D/chpasswd ;; esac
if [ -n "$HN" ]; then
    HN=${HN%%.*}; hostname "$HN"; echo "$HN" > /etc/hostname
    printf '127.0.1.1\t%s\n' "$HN" >> /etc/hosts
fi
if [ -s $D/keys ]; then
    mkdir -p -m 700 /root/.ssh
    grep -v '^[[:space:]]*$' $D/keys > /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
fi
# --- network-config v2 (as tstack's config drives write it): a static address for eth0 (by
#     MAC, else the only entry) that DHCP did not give wins, e.g. a bare-metal instance's
#     address on its provisioning network; the DHCP client stops. DHCP-only configs change nothing.
if [ -f $D/network-config ]; then
    set -- $(awk -v mac="$(cat /sys/class/net/eth0/address 2>/dev/null)" '
        /^  [A-Za-z0-9_-]+:[ \t]*$/ { n++; next }
        /^[ \t]+macaddress:/ { v = $2; gsub(/"/, "", v); m[n] = tolower(v); next }
        /^[ \t]+- [0-9.]+\/[0-9]+[ \t]*$/ { if (!(n in a)) a[n] = $2; next }
        /^[ \t]+via:/ { if (!(n in g)) g[n] = $2; next }
        END { p = 0; for (i = 1; i <= n; i++) if ((i in a) && m[i] == tolower(mac)) p = i
              if (!p && n == 1 && (1 in a) && !(1 in m)) p = 1
              if (p) print a[p], g[p] }' $D/network-config)
    if [ -n "${1:-}" ] && [ "${1%/*}" != "$IP" ]; then
        [ -f /run/udhcpc.eth0.pid ] && kill "$(cat /run/udhcpc.eth0.pid)" 2>/dev/null
        ip -4 addr flush dev eth0; ip addr add "$1" dev eth0; ip link set eth0 up
        [ -n "${2:-}" ] && ip route replace default via "$2" dev eth0
        IP=${1%/*}; echo "$IP" > /run/ipv4
        log "eth0 static ip=$1${2:+ gw=$2} (network-config)"
    fi
fi
SSHD_OPTS=-s                          # key-only ...
if [ -n "${PW:-}" ]; then             # ... unless #cloud-config 'password:' was given
    sed -i "s|^root:[^:]*:|root:$(mkpasswd -m sha512 "$PW"):|" /etc/shadow
    SSHD_OPTS=""
fi
# ... or 'chpasswd: list:' (the ZStack manual's example: root:word); RANDOM is not supported
if [ -s $D/chpasswd ]; then
    while IFS=: read -r u p; do
        case "$u" in ''|*[!a-z0-9_-]*) continue ;; esac
        case "$p" in ''|R|RANDOM) continue ;; esac
        grep -q "^$u:" /etc/shadow 2>/dev/null || continue
        case "$p" in                  # a crypt(3) hash ('$6$salt$hash') is taken as is
            '$'[0-9]'$'*'$'*|'$'[0-9][a-z]'$'*'$'*) h=$p ;;
            *) h=$(mkpasswd -m sha512 "$p") ;;
        esac
        case "$h" in *[!A-Za-z0-9./\$]*) continue ;; esac
        sed -i "s|^$u:[^:]*:|$u:$h:|" /etc/shadow
        PW=set SSHD_OPTS=""
    done < $D/chpasswd
fi
log "hostname=$(hostname) keys=$(grep -c . /root/.ssh/authorized_keys 2>/dev/null || echo 0)${PW:+ password=set}"

# --- ssh server (ed25519 host key generated per boot: fast even under TCG)
wait $KEYPID
sed -n 's/^Fingerprint: /tinyguest: ssh host key fingerprint /p' /run/hostkey.txt
syslogd -C64 2>/dev/null               # in-memory log ('logread'), e.g. dropbear auth errors
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -p 22 $SSHD_OPTS -P /run/dropbear.pid
i=0; while [ $i -lt 50 ] && ! grep -q ':0016 00000000:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
    usleep 100000; i=$((i+1)); done
log "sshd listening"

# --- user-data script / runcmd (output to console and /var/log/user-data.log)
if [ -x $D/user-script ]; then
    log "running user-data script"
    { $D/user-script; echo $? > $D/user-script.rc; } 2>&1 | tee /var/log/user-data.log
    log "user-data script exit=$(cat $D/user-script.rc)"
elif [ -s $D/runcmd ]; then
    log "running runcmd"
    while IFS= read -r c; do sh -c "$c"; done < $D/runcmd 2>&1 | tee /var/log/user-data.log
fi

MSG="TINYGUEST-READY hostname=$(hostname) ip=${IP:-none} datasource=$DS uptime=$(up)"
echo "$MSG" > /dev/ttyS0 2>/dev/null
echo "$MSG" > /dev/tty1 2>/dev/null
echo "$MSG" > /run/ready
EOF
chmod 755 "$R/etc/init.d/rcS"

cat > "$R/etc/init.d/rcK" <<'EOF'
#!/bin/sh
exec >/dev/console 2>&1
echo "tinyguest: shutting down"
[ -x /etc/rc.shutdown ] && /etc/rc.shutdown      # hook for user-data scripts
[ -f /run/udhcpc.eth0.pid ] && kill "$(cat /run/udhcpc.eth0.pid)" 2>/dev/null
[ -f /run/dropbear.pid ] && kill "$(cat /run/dropbear.pid)" 2>/dev/null
sync
echo "TINYGUEST-POWEROFF"
EOF
chmod 755 "$R/etc/init.d/rcK"

# ---------------------------------------------------------------- 4. initramfs
# /dev/console must exist before devtmpfs is mounted; mknod needs root, so instead
# append a hand-written newc cpio member (the kernel concatenates cpio archives).
newc_hdr() { # name mode rdevmajor rdevminor
    n=$1; printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        1 "$2" 0 0 1 0 0 0 0 "$3" "$4" $((${#n} + 1)) 0 "$n"
    pad=$(( (4 - (110 + ${#n} + 1) % 4) % 4 )); head -c $pad /dev/zero
}
{
    (cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
    newc_hdr dev/console $((0020000 | 0600)) 5 1
    newc_hdr TRAILER!!! 0 0 0
} > "$B/initrd.cpio"
case "$COMP" in
    gzip) gzip -9n < "$B/initrd.cpio" > "$B/initrd.img" ;;
    zstd) zstd -q -12 --long=24 -T0 < "$B/initrd.cpio" > "$B/initrd.img" ;;  # -19: -0.3 MB, +6 s
    lz4)  lz4 -q -l -9 < "$B/initrd.cpio" > "$B/initrd.img" ;;
    xz)   xz -9 --check=crc32 < "$B/initrd.cpio" > "$B/initrd.img" ;;
    none) cp "$B/initrd.cpio" "$B/initrd.img" ;;
    *) die "unknown COMP=$COMP" ;;
esac
rm -f "$B/initrd.cpio"
cp "$P/boot/vmlinuz-$KVER" "$B/vmlinuz"

# ---------------------------------------------------------------- 5. disk image
# MBR (syslinux mbr.bin) + one active FAT16 partition at 1 MiB holding
# ldlinux.sys/ldlinux.c32 (syslinux --install via mtools), syslinux.cfg, vmlinuz, initrd.img
cat > "$B/syslinux.cfg" <<EOF
${SYSLINUX_EXTRA:-}
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF
PSTART=2048
need_kb=$(( ( $(stat -c %s "$B/vmlinuz") + $(stat -c %s "$B/initrd.img") ) / 1024 + 1024 ))
PKB=$(( (need_kb + 1023) / 1024 * 1024 ))            # partition size, KiB, MiB-rounded
PSECT=$(( PKB * 2 ))
rm -f "$B/part.img"
mkfs.fat -F 16 -n TINYGUEST -h $PSTART -C "$B/part.img" $PKB >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$B/part.img" "$B/syslinux.cfg" "$B/vmlinuz" "$B/initrd.img" ::/
syslinux --install "$B/part.img"

le32() { v=$1; for _ in 1 2 3 4; do printf "\\$(printf %03o $((v & 255)))"; v=$((v >> 8)); done; }
DISK=$B/disk.raw
rm -f "$DISK"
truncate -s $(( (PSTART + PSECT) * 512 )) "$DISK"
dd if=$SYSLINUX_MBR of="$DISK" bs=440 count=1 conv=notrunc status=none
# partition entry 1: active, CHS dummies, type 0x0e (FAT16 LBA), LBA start, sectors
{ printf '\200\376\377\377\016\376\377\377'; le32 $PSTART; le32 $PSECT; } |
    dd of="$DISK" bs=1 seek=446 conv=notrunc status=none
printf '\125\252' | dd of="$DISK" bs=1 seek=510 conv=notrunc status=none
dd if="$B/part.img" of="$DISK" bs=1M seek=1 conv=notrunc status=none
rm -f "$OUT/.tinyguest.qcow2.tmp"
if [ "$QCOW_COMPRESS" = 1 ]; then
    qemu-img convert -c -f raw -O qcow2 "$DISK" "$OUT/.tinyguest.qcow2.tmp"
else
    qemu-img convert -f raw -O qcow2 "$DISK" "$OUT/.tinyguest.qcow2.tmp"
fi
chmod 644 "$OUT/.tinyguest.qcow2.tmp"
rm -f "$DISK" "$B/part.img"

# ---------------------------------------------------------------- 6. ISO image
if [ "$BUILD_ISO" = 1 ]; then
    mkdir -p "$B/iso/isolinux"
    cp $ISOLINUX_BIN $LDLINUX_C32 "$B/iso/isolinux/"
    cp "$B/syslinux.cfg" "$B/iso/isolinux/isolinux.cfg"
    cp "$B/vmlinuz" "$B/initrd.img" "$B/iso/"
    rm -f "$OUT/.tinyguest.iso.tmp"
    xorriso -as mkisofs -quiet -o "$OUT/.tinyguest.iso.tmp" -V TINYGUEST -J -r \
        -isohybrid-mbr $ISOHDPFX -b isolinux/isolinux.bin -c isolinux/boot.cat \
        -no-emul-boot -boot-load-size 4 -boot-info-table "$B/iso" 2>&1 | grep -v '^xorriso : UPDATE' || true
fi
# rename into place (atomic for readers using them as backing files); the qcow2 last, and
# everything world-readable so libvirt-qemu can open them
for f in vmlinuz initrd.img; do cp "$B/$f" "$OUT/.$f.tmp"; chmod 644 "$OUT/.$f.tmp"; mv -f "$OUT/.$f.tmp" "$OUT/$f"; done
if [ "$BUILD_ISO" = 1 ]; then chmod 644 "$OUT/.tinyguest.iso.tmp"; mv -f "$OUT/.tinyguest.iso.tmp" "$OUT/tinyguest.iso"; fi
mv -f "$OUT/.tinyguest.qcow2.tmp" "$OUT/tinyguest.qcow2"
chmod 755 "$OUT"

T1=$(date +%s.%N)
echo "build.sh: kernel $KVER, initramfs $COMP, done in $(echo "$T1 $T0" | awk '{printf "%.2f", $1-$2}') s"
ls -l "$OUT"
