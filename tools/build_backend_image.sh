#!/usr/bin/env bash
# `make image`: build app/Dockerfile without a Docker engine and prove the image serves /health.
#
#  1. a Debian 12 root with python3 + python3-venv made by debootstrap, imported as a local base image
#     (cached in buildah's storage; delete it with `buildah rmi localhost/canvalo-debian-base:bookworm`);
#  2. `buildah build --isolation chroot --build-arg BASE_IMAGE=<that image> -f app/Dockerfile`;
#  3. the image's own command in a `buildah run` container on 127.0.0.1, then the image's HEALTHCHECK
#     command inside it, and /health from the host.
# Needs root (debootstrap, buildah's chroot isolation) and the Debian and PyPI archives; no registry.
set -euo pipefail

IMAGE=${IMAGE:-localhost/canvalo-backend:dev}
BASE=${BASE:-localhost/canvalo-debian-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PORT=${PORT:-18080}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

say() { printf '==> %s\n' "$*"; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing buildah and debootstrap"
  apt-get install -y -q buildah debootstrap >/dev/null
fi

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /var/tmp/canvalo-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  say "debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  say "importing it as $BASE"
  container=$(buildah from scratch)
  mountpoint=$(buildah mount "$container")
  cp -a "$rootfs"/. "$mountpoint"/
  buildah umount "$container" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$container"
  buildah commit --rm "$container" "$BASE" >/dev/null
fi

say "buildah build $IMAGE"
started=$(date +%s)
ca_arguments=()
# Behind a TLS-intercepting proxy the build must trust the host's CAs: mounted for the build only.
if [[ -n ${SSL_CERT_FILE:-} && -f $SSL_CERT_FILE ]]; then
  ca_arguments=(--volume "$SSL_CERT_FILE:/etc/ssl/build-ca.crt:ro" --build-arg EXTRA_CA_BUNDLE=/etc/ssl/build-ca.crt)
fi
# Docker format: OCI image configs have no HEALTHCHECK.
buildah build --isolation chroot --layers --format docker "${ca_arguments[@]}" \
  --build-arg BASE_IMAGE="$BASE" -f "$ROOT/app/Dockerfile" -t "$IMAGE" "$ROOT"
say "built in $(( $(date +%s) - started )) s"

say "checking the image's user, command and healthcheck"
buildah inspect --type image --format 'user={{.OCIv1.Config.User}} cmd={{.OCIv1.Config.Cmd}}' "$IMAGE"; echo
buildah inspect --type image --format 'healthcheck={{.Docker.Config.Healthcheck}}' "$IMAGE"; echo

say "running the image's command on 127.0.0.1:$PORT"
container=$(buildah from "$IMAGE")
log=$(mktemp)
cleanup() { [[ -n ${server_pid:-} ]] && kill -TERM "$server_pid" 2>/dev/null; wait "${server_pid:-}" 2>/dev/null || true; buildah rm "$container" >/dev/null; }
trap cleanup EXIT
# A laptop check, not a stage: the image itself sets no ENVIRONMENT (the task definition does).
buildah run --isolation chroot --env ENVIRONMENT=development --env HOST=127.0.0.1 --env PORT="$PORT" "$container" -- python -m app > >(tee "$log") &
server_pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2).read().decode())"
say "the image's HEALTHCHECK command, inside the container"
buildah run --isolation chroot --env PORT="$PORT" "$container" -- python -c \
  "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"
say "SIGTERM to the image's server process (what ECS sends on stop)"
# buildah run -> buildah-chroot-runtime -> buildah-chroot-exec -> python: signal the Python process itself.
descendants() { local child; for child in $(ps -o pid= --ppid "$1"); do echo "$child"; descendants "$child"; done; }
app_pid=
for pid in $(descendants "$server_pid"); do
  [[ $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) == "/opt/venv/bin/python -m app " ]] && app_pid=$pid
done
[[ -n $app_pid ]] || { say "cannot find the server process under buildah run $server_pid"; exit 1; }
signalled=$(date +%s.%N)
kill -TERM "$app_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
grep -q '"Finished server process' "$log" || { say "the server did not shut down cleanly"; exit 1; }
say "server exited $(python3 -c "print(f'{$(date +%s.%N) - $signalled:.2f}')") s after SIGTERM"
say "image $IMAGE builds, answers /health, passes its HEALTHCHECK and stops on SIGTERM"
