#!/usr/bin/env bash
# Build and run the disco server image with podman, without Docker Hub.
#
#   container.sh tools           install podman, runc and debootstrap (apt) when missing
#   container.sh base            print the name of a local debian:bookworm-slim equivalent,
#                                building it first from Debian's packages when absent (cached)
#   container.sh build [TAG]     build the image from this checkout (default tag localhost/disco)
#   container.sh podman ARGS...  run podman with this machine's settings (see below)
#
# With Docker and Docker Hub at hand none of this is needed: `docker build -t disco .`.
#
# Podman settings: runc as the runtime (crun cannot set up this machine's cgroups), cgroupfs,
# no default ulimits (a container may not raise them here): scripts/containers.conf, used
# through CONTAINERS_CONF unless the caller set one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/scripts/containers.conf}"

# The base image's name carries a digest of the recipe below: a changed recipe builds a new base.
BASE_REPO="localhost/disco-base"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LOCK="${DISCO_CONTAINER_LOCK:-/tmp/disco-container-base.lock}"

tools() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  [ -x /usr/sbin/runc ] || command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[container] installing ${missing[*]} (apt)" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${missing[@]}" >&2
}

# What debian:bookworm-slim adds to a minbase debootstrap: no docs, man pages or translations
# (dpkg excludes, as debuerreotype's slimify), apt cleaned after each use, the same apt sources.
slimify() {
  local dir="$1"
  cat > "$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
CFG
  cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  echo 'Acquire::Languages "none";' > "$dir/etc/apt/apt.conf.d/docker-no-languages"
  rm -f "$dir/etc/apt/sources.list"
  cat > "$dir/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/{man,info,groff,lintian,linda}/* "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log \
    "$dir"/var/cache/debconf/*-old
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
}

base_name() {
  local recipe
  recipe="$(declare -f slimify; echo "$SUITE minbase")"
  echo "$BASE_REPO:$SUITE-slim-$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
}

base() {
  local name
  name="$(base_name)"
  exec 9>"$LOCK"
  flock 9  # one builder at a time; the others then find the image
  if ! podman image exists "$name"; then
    tools
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: $work is local to this function
    trap "rm -rf '$work'" EXIT
    echo "[container] building $name with debootstrap (a few minutes, once)" >&2
    debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
      || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    slimify "$work/rootfs"
    # Imported under a temporary name, then tagged: the cached name never points at a half image.
    local partial="$name-partial-$$"
    tar -C "$work/rootfs" -c . | podman import --quiet - "$partial" >/dev/null
    podman tag "$partial" "$name"
    podman untag "$partial" "$partial"
  fi
  flock -u 9
  echo "$name"
}

image_ids() { podman images --all --quiet --no-trunc "$@" | sort -u; }

# Build with podman's layer cache, keeping exactly two things between builds: the base image and
# the Dockerfile's `deps` stage (Python + the server's dependencies), tagged $CACHE_TAG. The
# build stage's intermediate images (sources, web app) are removed right after each build, and
# removing the built image removes its own layers; a `deps` stage that changed replaces the old.
CACHE_TAG="localhost/disco-build-cache:deps"

build() {
  local tag="${1:-localhost/disco}"
  local base_image
  base_image="$(base)"
  # pip (and npm) inside the build use this machine's pip configuration and CA bundle, mounted
  # read-only; the bundle beside the image's own /etc/ssl/certs, which its packages write.
  local extra=()
  [ -f /etc/pip.conf ] && extra+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  local bundle="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
  if [ -f "$bundle" ]; then
    extra+=(-v "$bundle:/run/host-ca.crt:ro"
      --build-arg PIP_CERT=/run/host-ca.crt --build-arg NODE_EXTRA_CA_CERTS=/run/host-ca.crt)
  fi
  extra+=(--format docker --network=host --layers=true --build-arg "BASE_IMAGE=$base_image")
  exec 9>"$LOCK"
  flock 9  # the clean-up below must only see this build's images
  local old_cache before after
  old_cache="$(podman image inspect --format '{{.Id}}' "$CACHE_TAG" 2>/dev/null || true)"
  before="$(image_ids)"
  podman build "${extra[@]}" --target deps -t "$CACHE_TAG" "$root" >&2
  podman build "${extra[@]}" -t "$tag" "$root" >&2
  after="$(image_ids)"
  local new_dangling
  new_dangling="$(comm -12 <(image_ids --filter dangling=true) <(comm -13 <(echo "$before") \
    <(echo "$after")))"
  [ -z "$new_dangling" ] || podman rmi $new_dangling >/dev/null
  local new_cache
  new_cache="$(podman image inspect --format '{{.Id}}' "$CACHE_TAG")"
  if [ -n "$old_cache" ] && [ "$old_cache" != "$new_cache" ]; then
    podman rmi "$old_cache" >/dev/null 2>&1 || true  # still used by another image: kept
  fi
  flock -u 9
  echo "$tag"
}

case "${1:-}" in
  tools) tools ;;
  base) base ;;
  build) shift; build "$@" ;;
  podman) shift; exec podman "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
