#!/usr/bin/env bash
# Build app/Dockerfile and push it to ECR as ECR_REPOSITORY_URI:IMAGE_TAG (its content's tag, image_tag.sh), once.
#
#   ECR_REPOSITORY_URI=<account>.dkr.ecr.<region>.amazonaws.com/canvalo-backend IMAGE_TAG="$(bash pipelines/image_tag.sh)" \
#     [BASE_IMAGE=<base image>@sha256:<digest>] pipelines/publish_image.sh
#
# The repository's tags are immutable: a tag that is already there (the same content released again, by this
# commit or an earlier one) is kept, not rebuilt, so every stage runs the very image first pushed for it.
# Either way the image's digest, as ECR records it, goes to IMAGE_DIGEST_FILE (when set): the stages run the
# image by that digest, which no later push or delete-and-push under the same tag changes.
set -euo pipefail

fail() { echo "error: $*" >&2; exit 1; }

repository="${ECR_REPOSITORY_URI:-}"
tag="${IMAGE_TAG:-}"
[[ "$repository" =~ ^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+$ ]] ||
  fail "ECR_REPOSITORY_URI='$repository' is not an ECR repository URI (the build project sets it)"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ && "$tag" != latest ]] ||
  fail "IMAGE_TAG='$tag' is not an immutable tag: build.yml passes the content's tag (bash pipelines/image_tag.sh)"
registry="${repository%%/*}"
name="${repository#*/}"
region="$(cut -d . -f 4 <<<"$registry")"
root="$(cd "$(dirname "$0")/.." && pwd)"

record_digest() {
  local digest
  digest="$(aws ecr describe-images --region "$region" --repository-name "$name" --image-ids imageTag="$tag" \
    --query 'imageDetails[0].imageDigest' --output text)"
  [[ "$digest" =~ ^sha256:[a-f0-9]{64}$ ]] || fail "ECR gave no digest for $repository:$tag (got '$digest')"
  [[ -z "${IMAGE_DIGEST_FILE:-}" ]] || printf '%s\n' "$digest" >"$IMAGE_DIGEST_FILE"
  echo "$repository@$digest"
}

if aws ecr describe-images --region "$region" --repository-name "$name" --image-ids imageTag="$tag" >/dev/null 2>&1; then
  echo "$repository:$tag already exists: keeping it (tags are immutable)"
  record_digest
  exit 0
fi
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
# BASE_IMAGE (the build project's variable, e.g. <image>@sha256:<digest>) pins the base; else the Dockerfile's default.
base_arg=()
[[ -z "${BASE_IMAGE:-}" ]] || base_arg=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
docker build --file "$root/app/Dockerfile" "${base_arg[@]}" --tag "$repository:$tag" "$root"
docker push "$repository:$tag"
echo "pushed $repository:$tag"
record_digest
