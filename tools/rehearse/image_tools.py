"""The build image's `curl` and `docker` inside the rehearsal (see tools/rehearse/codebuild.py).

`curl` serves https://releases.hashicorp.com/terraform/... from the rehearsal's mirror and reaches no
other host. `docker` accepts login and build, and `docker push` puts a manifest for the tag into the
rehearsal's ECR with the build's own credentials, so that ECS (the fake Terraform) finds the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import boto3

RELEASES = "https://releases.hashicorp.com/"


def curl(args: Sequence[str]) -> int:
    output, url, index = None, None, 0
    while index < len(args):
        arg = args[index]
        if arg in ("--output", "-o"):
            output, index = args[index + 1], index + 2
            continue
        if arg in ("--retry", "--max-time", "--connect-timeout"):
            index += 2
            continue
        if not arg.startswith("-"):
            url = arg
        index += 1
    if not url or not url.startswith(RELEASES):
        print(f"curl: (6) Could not resolve host: {url} (the rehearsal reaches no network)", file=sys.stderr)
        return 6
    source = Path(os.environ["CANVALO_REHEARSAL_MIRROR"]) / url.removeprefix(RELEASES)
    if not source.is_file():
        print(f"curl: (22) The requested URL returned error: 404 ({url})", file=sys.stderr)
        return 22
    if output:
        shutil.copyfile(source, output)
    else:
        sys.stdout.buffer.write(source.read_bytes())
    return 0


def docker(args: Sequence[str]) -> int:
    if not args:
        return 2
    if args[0] == "login":
        sys.stdin.read()
        print("Login Succeeded")
        return 0
    if args[0] == "build":
        print(f"(rehearsal) docker build {' '.join(args[1:])}: the image is built for real by `make image`")
        return 0
    if args[0] == "push":
        match = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:]+):(.+)$", args[1])
        if not match:
            print(f"docker push: {args[1]} is not an ECR image reference", file=sys.stderr)
            return 1
        _, region, repository, tag = match.groups()
        layer = hashlib.sha256(tag.encode()).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1,
                "digest": f"sha256:{layer}",
            },
            "layers": [],
        }
        ecr = boto3.session.Session(region_name=region).client("ecr")
        ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
        print(f"{tag}: pushed")
        return 0
    print(f"docker {args[0]}: not available in the rehearsal", file=sys.stderr)
    return 1


def main(argv: Sequence[str]) -> int:
    tool, *args = argv
    return curl(args) if tool == "curl" else docker(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
