#!/usr/bin/env bash
# post_build of pipelines/buildspecs/drift.yml: bash pipelines/drift_failure.sh MARKER
#
# When the drift build failed before `python -m pipelines.drift` could report (installing, reading the
# deployed commit), publish one message naming the build's log to
# NOTIFICATION_TOPIC_ARN. Nothing when the build succeeded, or when MARKER exists: drift.py touches it
# once it has reported (published, or found it had already published the same thing). It uses the AWS
# CLI of CodeBuild's image, because the failure may be that the project's .venv was never installed.
# Like drift.py it mails the same failure once: it keeps the failure's digest in DRIFT_DIGEST_PARAMETER
# (the build URL, which differs every run, is not part of it); drift.py's next clean run resets it.
set -uo pipefail

marker="${1:?usage: bash pipelines/drift_failure.sh MARKER}"
if [ "${CODEBUILD_BUILD_SUCCEEDING:-1}" = "1" ] || [ -e "$marker" ]; then
  exit 0
fi
if [ -z "${NOTIFICATION_TOPIC_ARN:-}" ]; then
  echo "error: the drift check failed and NOTIFICATION_TOPIC_ARN is not set: nobody is told" >&2
  exit 1
fi

stage="${STAGE:-prod}"
subject="Canvalo $stage: the drift check could not run"
digest="$(printf 'failure before the check\n%s\n' "$stage" | sha256sum | cut -d ' ' -f 1)"
if [ -n "${DRIFT_DIGEST_PARAMETER:-}" ]; then
  last="$(aws ssm get-parameter --name "$DRIFT_DIGEST_PARAMETER" --query Parameter.Value --output text)" || last=""
  if [ "$last" = "$digest" ]; then
    echo "the drift check failed before it ran, as on its last run: already mailed, not published again"
    exit 0
  fi
fi

message="The daily drift check of $stage failed before it could check anything (installing its tools, or reading which commit $stage last applied). Until it runs, drift goes unnoticed. Build log: ${CODEBUILD_BUILD_URL:-unknown}"
aws sns publish --topic-arn "$NOTIFICATION_TOPIC_ARN" --subject "$subject" --message "$message" >/dev/null || exit 1
echo "published: $subject"
if [ -n "${DRIFT_DIGEST_PARAMETER:-}" ]; then
  aws ssm put-parameter --name "$DRIFT_DIGEST_PARAMETER" --value "$digest" --type String --overwrite >/dev/null ||
    echo "warning: cannot write $DRIFT_DIGEST_PARAMETER: the next failure may be mailed again" >&2
fi
