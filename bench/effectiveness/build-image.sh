#!/bin/bash
# Build the benchmark guest: Debian's linux-image-amd64 kernel plus a busybox
# initramfs holding hackbench (rt-tests), futexpp (futexpp.c, static),
# spinlock (spinlock.c, static) and
# guest-init.sh as /init.
#
#   build-image.sh [OUTDIR]      (default: $BENCH_OUT/image, BENCH_OUT=bench/out/effectiveness)
#
# Prints the image directory (holding vmlinuz and initrd.img) on stdout.
# The image is rebuilt only when one of its inputs changed (stamp file).
# Needs: apt-get (downloads the kernel .deb, does not install it),
# busybox-static (also its cpio), rt-tests, gcc with libc6-dev (static libc), gzip.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-${BENCH_OUT:-$repo/bench/out/effectiveness}/image}
mkdir -p "$out"

log() { echo "build-image: $*" >&2; }

for need in /bin/busybox /usr/bin/hackbench; do
        [ -x "$need" ] || { log "missing $need: apt-get install busybox-static rt-tests"; exit 1; }
done
busybox_file=$(file -L /bin/busybox)
case "$busybox_file" in
*"statically linked"*|*"static-pie linked"*) ;;
*) log "/bin/busybox is not static: apt-get install busybox-static"; exit 1 ;;
esac

# The kernel: the package linux-image-amd64 depends on, e.g. linux-image-6.1.0-28-amd64.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_pkg" ] || { log "cannot resolve linux-image-amd64 (run apt-get update)"; exit 1; }
kernel_ver=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/ { print $2 }')

stamp="kernel=$kernel_pkg=$kernel_ver
busybox=$(dpkg-query -W -f '${Version}' busybox-static)
rt-tests=$(dpkg-query -W -f '${Version}' rt-tests)
inputs=$(cat "$here/build-image.sh" "$here/guest-init.sh" "$here/futexpp.c" "$here/spinlock.c" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
   [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
        log "up to date: $out ($kernel_pkg $kernel_ver)"
        echo "$out"
        exit 0
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Kernel: only ./boot/vmlinuz-* out of the .deb; the modules are not needed
# (serial 8250, ACPI power-off, devtmpfs and tmpfs are built in).
deb=$(ls "$out"/"${kernel_pkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
        log "downloading $kernel_pkg $kernel_ver"
        (cd "$out" && apt-get download -q -o APT::Sandbox::User=root "$kernel_pkg" >&2)
        deb=$(ls "$out"/"${kernel_pkg}"_*.deb | head -n1)
fi
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
cp "$work"/boot/vmlinuz-* "$work/vmlinuz"

# Initramfs.
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib,lib64,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done

cp /usr/bin/hackbench "$root/usr/bin/hackbench"
# hackbench is dynamically linked: bring its loader and libraries along at
# the paths ldd reports.
ldd /usr/bin/hackbench | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
done

gcc -O2 -static -pthread -Wall -Wextra -Werror -o "$root/usr/bin/futexpp" "$here/futexpp.c"
gcc -O2 -static -pthread -Wall -Wextra -Werror -o "$root/usr/bin/spinlock" "$here/spinlock.c"

install -m 0755 "$here/guest-init.sh" "$root/init"
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -6) > "$work/initrd.img"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
echo "$stamp" > "$out/stamp"
chmod 0644 "$out/vmlinuz" "$out/initrd.img"
log "built $out: $kernel_pkg $kernel_ver, initrd $(du -h "$out/initrd.img" | cut -f1)"
echo "$out"
