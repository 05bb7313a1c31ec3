#!/usr/bin/env bash
# Print the backend image's tag: the SHA-256 of what goes into the image, so a commit that does not change it
# (docs, infrastructure, frontend) reuses the running image and plans no ECS change.
#
#   [BASE_IMAGE=<image>@sha256:<digest>] bash pipelines/image_tag.sh      # app-<64 hex>
#
# What goes in is what app/Dockerfile copies from the build context (.dockerignore: pyproject.toml, uv.lock,
# app/ without caches and .env) and the base image it builds on (BASE_IMAGE, the build project's pin; empty
# means the Dockerfile's default). The tag names the content, never a moving reference: publish_image.sh
# keeps a tag that exists, and ECR's tags are immutable.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
{
  find pyproject.toml uv.lock app -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'app/.env' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum
  printf 'BASE_IMAGE=%s\n' "${BASE_IMAGE:-}"
} | sha256sum | cut -d ' ' -f 1 | sed 's/^/app-/'
