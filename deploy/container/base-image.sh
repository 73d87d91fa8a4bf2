#!/usr/bin/env bash
# Makes the base image of deploy/container/Dockerfile's builder stage locally,
# for machines that reach no container registry: Debian 12 (bookworm) by
# `debootstrap --variant=minbase` from the Debian mirror apt uses, imported
# into podman under the name the Dockerfile's BASE_IMAGE names
# (docker.io/library/debian:bookworm-slim), so that `podman build` of the
# plain target finds it locally. Done once: nothing happens while podman has
# an image of that name (a pulled one included). Needs root, podman and
# debootstrap (deploy/install-deps.sh installs them and runs this).
#
# Usage: deploy/container/base-image.sh MIRROR    e.g. http://deb.debian.org/debian
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "base-image: ERROR: $*" >&2
  exit 1
}
(($# == 1)) || die "usage: $0 MIRROR"
mirror="${1%/}"
suite=bookworm
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

image="$(sed -n 's/^ARG BASE_IMAGE=//p' "$HERE/Dockerfile")"
[[ -n "$image" ]] || die "no 'ARG BASE_IMAGE=' line in $HERE/Dockerfile"
command -v podman >/dev/null 2>&1 || die "podman not found (deploy/install-deps.sh installs it)"
if podman image exists "$image"; then
  echo "base-image: $image already present" >&2
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (deploy/install-deps.sh installs it)"
[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root"
[[ -r "$keyring" ]] || die "$keyring is missing (package debian-archive-keyring)"

work="$(mktemp -d /var/tmp/eventbus-base-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "base-image: debootstrap --variant=minbase $suite from $mirror (about a minute)" >&2
if ! debootstrap --variant=minbase --keyring="$keyring" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap failed"
fi
# apt's sources as in Debian's own image: the release and its updates from
# the mirror, security updates from where this machine gets them.
security="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
  awk 'tolower($1) == "uris:" || $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian-security\/?$/) { sub(/\/$/, "", $i); print $i; exit } }' || true)"
rm -f "$root/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
    "$mirror" "$suite" "$suite" "$keyring"
  if [[ -n "$security" ]]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
      "$security" "$suite" "$keyring"
  fi
} >"$root/etc/apt/sources.list.d/debian.sources"
# No package lists or downloaded packages, as in Debian's image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" --numeric-owner -c . |
  podman import --quiet --change 'CMD ["bash"]' --message "debootstrap --variant=minbase $suite ($mirror)" - "$image" >/dev/null ||
  die "podman import failed"
echo "base-image: imported $image ($(($(podman image inspect --format '{{.Size}}' "$image") / 1000000)) MB)" >&2
