"""The Apply's own smoke check: the release just deployed answers, or the stage is restored (pipelines.restore).

    python -m pipelines.smoke_check version --outputs DIR
    python -m pipelines.smoke_check check --backend-url URL --frontend-url URL --expect-version V
                                          [--timeout SECONDS] [--interval SECONDS]

The post-deploy tests (`tests/deployed`, the smoke project) run the commit's code without any right over
the stage, and a failed action ends its CodePipeline stage: nothing could restore the stage after them. So
the Apply, which holds the stage's deploy role, checks the same essentials itself with this pinned module,
before it ends, and restores the previous release when they fail:
- `version` prints the release the applied task definition runs (its APP_VERSION: the image tag Build
  synthesized, `pipelines/image_tag.sh`), read from ECS (`backend_task_definition_arn` in the outputs);
- `check` GETs `<backend>/health` until it answers 200 with status "ok" and that version, and the frontend's
  index until it answers 200 with HTML, within `--timeout` (old tasks drain from the load balancer for a
  while after a rollout); it exits 1 with one line naming what still fails.
Only the standard library talks HTTP here: the toolkit installs nothing it does not need.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError
from pipelines.verify_rollout import read_release

EXIT_BAD_INPUT = 2
# The backend's own budget for a health answer (R1.4).
REQUEST_TIMEOUT_SECONDS = 5.0
VERSION_VARIABLE = "APP_VERSION"


class SmokeError(CommandError):
    """The deployed release does not answer as it should, or cannot be read."""


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


# GETs a URL: (status, content type, body); raises OSError when nothing answers.
Fetch = Callable[[str], Answer]


def fetch(url: str) -> Answer:
    if not url.startswith(("https://", "http://")):
        raise OSError(f"{url} is not an http(s) URL")
    # Only http(s), checked above: the URLs come from the stage's outputs.
    request = urllib.request.Request(url, headers={"User-Agent": "canvalo-pipeline-smoke-check"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310
            return Answer(response.status, response.headers.get("Content-Type", ""), response.read(65536))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.get("Content-Type", ""), error.read(4096))


def backend_problem(answer: Answer, url: str, expected_version: str) -> str | None:
    if answer.status != 200:
        return f"GET {url} answered {answer.status}"
    try:
        document = json.loads(answer.body)
    except ValueError:
        return f"GET {url} answered no JSON ({answer.content_type or 'no content type'})"
    if not isinstance(document, dict) or document.get("status") != "ok":
        return f"GET {url} answered status {document.get('status') if isinstance(document, dict) else document!r}, not 'ok'"
    if document.get("version") != expected_version:
        return f"GET {url} runs release {document.get('version')!r}, not the deployed {expected_version!r}"
    return None


def frontend_problem(answer: Answer, url: str) -> str | None:
    if answer.status != 200:
        return f"GET {url} answered {answer.status}"
    if not answer.content_type.startswith("text/html") or b"<html" not in answer.body.lower():
        return f"GET {url} answered {answer.content_type or 'no content type'}, not the frontend's HTML index"
    return None


def problems(backend_url: str, frontend_url: str, expected_version: str, get: Fetch) -> list[str]:
    health = f"{backend_url.rstrip('/')}/health"
    found: list[str] = []
    for url in (health, frontend_url):
        try:
            answer = get(url)
        except OSError as error:
            found.append(f"GET {url} got no answer ({getattr(error, 'reason', error)})")
            continue
        problem = backend_problem(answer, url, expected_version) if url == health else frontend_problem(answer, url)
        if problem:
            found.append(problem)
    return found


def check(
    backend_url: str,
    frontend_url: str,
    expected_version: str,
    *,
    timeout: float,
    interval: float,
    get: Fetch = fetch,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    if not expected_version:
        raise SmokeError("--expect-version is empty: pass what `smoke_check version` printed", EXIT_BAD_INPUT)
    deadline = clock() + timeout
    while True:
        found = problems(backend_url, frontend_url, expected_version, get)
        if not found:
            return f"{backend_url}/health runs {expected_version}; {frontend_url} serves the frontend"
        if clock() + interval > deadline:
            raise SmokeError(f"smoke check failed after {timeout:.0f} s: {'; '.join(found)}")
        sleep(interval)


def applied_version(outputs: Path) -> str:
    """APP_VERSION of the task definition Terraform applied: the release /health must report."""
    arn = read_release(outputs).task_definition
    try:
        definition = boto3.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    except (BotoCoreError, ClientError) as error:
        raise SmokeError(f"cannot read task definition {arn}: {error}") from None
    for container in definition.get("containerDefinitions", []):
        for variable in container.get("environment", []):
            if variable.get("name") == VERSION_VARIABLE:
                return str(variable.get("value"))
    raise SmokeError(f"task definition {arn} sets no {VERSION_VARIABLE}: the stage's stack must pass the image tag")


def main(argv: Sequence[str] | None = None, get: Fetch = fetch) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.smoke_check", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    version = commands.add_parser("version", help="print the release the applied task definition runs")
    version.add_argument("--outputs", type=Path, required=True, help="the outputs directory of terraform_stage apply")
    smoke = commands.add_parser("check", help="GET /health and the frontend's index until they answer as deployed")
    smoke.add_argument("--backend-url", required=True)
    smoke.add_argument("--frontend-url", required=True)
    smoke.add_argument("--expect-version", required=True, help="the release /health must report")
    smoke.add_argument("--timeout", type=float, default=150.0, help="seconds to keep trying")
    smoke.add_argument("--interval", type=float, default=10.0, help="seconds between tries")
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(applied_version(args.outputs))
        else:
            print(
                check(
                    args.backend_url,
                    args.frontend_url,
                    args.expect_version,
                    timeout=args.timeout,
                    interval=args.interval,
                    get=get,
                )
            )
        return 0
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
