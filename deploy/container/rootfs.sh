#!/usr/bin/env bash
# Lays out the container image's whole root filesystem in OUT: the given
# binaries in /usr/local/bin (debug sections stripped), exactly the shared
# libraries `ldd` lists for them and the dynamic loader, the CA certificates
# of Debian's ca-certificates, and /etc/passwd, /etc/group with the non-root
# user (65532) the image runs as. deploy/container/Dockerfile copies OUT onto
# an empty image (FROM scratch): nothing else is in it, no shell, no package
# manager.
#
# Used by both targets of the Dockerfile: the builder stage runs it on what it
# compiled; for `--target prebuilt`, deploy/container/build-image.sh runs it on
# the host's build (into build/container/rootfs).
#
# Libraries go to the directory the C library is in (/lib/x86_64-linux-gnu on
# Debian), which the loader searches without an ld.so.cache; so does a
# library found through the binary's RUNPATH (librdkafka from build/deps).
#
# Usage: deploy/container/rootfs.sh OUT BINARY...
set -euo pipefail

die() {
  echo "rootfs: ERROR: $*" >&2
  exit 1
}
(($# >= 2)) || die "usage: $0 OUT BINARY..."
OUT="$(realpath -m "$1")"
shift
for tool in ldd readelf strip; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian packages libc-bin and binutils)"
done

# Every library path of the binaries (ldd's "name => path" lines) and the
# loader (the line that is only a path).
libs=()
interp=""
for bin in "$@"; do
  [[ -x "$bin" ]] || die "$bin is not an executable (build it first: deploy/build.sh)"
  listing="$(ldd "$bin")" || die "ldd $bin failed"
  if grep -q "not found" <<<"$listing"; then
    die "ldd $bin: libraries not found:"$'\n'"$(grep "not found" <<<"$listing")"
  fi
  while read -r first second third _; do
    if [[ "$second" == "=>" && "$third" == /* ]]; then
      libs+=("$third")
    elif [[ "$first" == /* ]]; then
      [[ -z "$interp" || "$interp" == "$first" ]] || die "two dynamic loaders: $interp and $first"
      interp="$first"
    fi
  done <<<"$listing"
done
[[ -n "$interp" ]] || die "no dynamic loader in the ldd output of $*"
libdir=""
for lib in "${libs[@]}"; do
  [[ "$(basename "$lib")" == libc.so.* ]] && libdir="$(dirname "$lib")"
done
[[ -n "$libdir" ]] || die "the binaries do not link the C library (libc.so.*)"

# Copies ELF file $1 to $2 (dereferenced), without debug sections.
copy_elf() {
  install -D -m 0755 "$1" "$2"
  # (Not `readelf | grep -q`: with pipefail, grep leaving early fails it.)
  if [[ "$(readelf -S "$2")" == *" .debug_"* ]]; then
    strip --strip-debug "$2"
  fi
}

# Only ever replaces a tree it made (or an empty folder).
if [[ -e "$OUT" && -n "$(ls -A "$OUT" 2>/dev/null)" && ! -d "$OUT/usr/local/bin" ]]; then
  die "$OUT is not empty and is not a root filesystem made by this script: not replacing it"
fi
rm -rf "$OUT"
mkdir -p "$OUT"
for bin in "$@"; do
  copy_elf "$bin" "$OUT/usr/local/bin/$(basename "$bin")"
done
copy_elf "$interp" "$OUT$interp"
mapfile -t unique < <(printf '%s\n' "${libs[@]}" | sort -u)
for lib in "${unique[@]}"; do
  dest="$OUT$libdir/$(basename "$lib")"
  [[ -e "$dest" ]] && die "two libraries named $(basename "$lib")"
  copy_elf "$lib" "$dest"
done

# Each binary must resolve every library inside OUT (the loader searches the
# host's directories after --library-path, so a miss shows as a host path).
for bin in "$@"; do
  listing="$("$OUT$interp" --inhibit-cache --library-path "$OUT$libdir" --list \
    "$OUT/usr/local/bin/$(basename "$bin")")" || die "the loader cannot load $bin from $OUT"
  outside="$(awk '$2 == "=>" && index($3, "'"$OUT"'/") != 1 {print}' <<<"$listing")"
  [[ -z "$outside" ]] || die "$bin resolves libraries outside $OUT:"$'\n'"$outside"
done

# CA certificates (Debian's ca-certificates bundle), where OpenSSL's default
# paths (/usr/lib/ssl) and librdkafka's probe find them.
ca=/etc/ssl/certs/ca-certificates.crt
[[ -s "$ca" ]] || die "$ca is missing (Debian package ca-certificates)"
install -D -m 0644 "$ca" "$OUT$ca"
mkdir -p "$OUT/usr/lib/ssl"
ln -s /etc/ssl/certs "$OUT/usr/lib/ssl/certs"
ln -s "$ca" "$OUT/usr/lib/ssl/cert.pem"

# The user and group 65532 (named nonroot, as in distroless images), the
# name service order for host names (/etc/hosts, then DNS; both built into
# glibc), and an empty /tmp.
mkdir -p "$OUT/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$OUT/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$OUT/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$OUT/etc/nsswitch.conf"
chmod 0644 "$OUT/etc/passwd" "$OUT/etc/group" "$OUT/etc/nsswitch.conf"
install -d -m 1777 "$OUT/tmp"

echo "rootfs: $OUT: $(du -sh "$OUT" | cut -f1) ($# binaries, ${#unique[@]} libraries, loader $interp)" >&2
