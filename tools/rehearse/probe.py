"""The deployed stage as a browser would find it, for the rehearsal's post-deploy tests.

    python -m tools.rehearse.probe --stage beta --backend-url URL --frontend-url URL

The URLs of the stage's outputs name no host that answers here, so the rehearsal stands this in for
`make deployed-test`: it asks the rehearsal's AWS what those hosts would serve. The backend answers when
its URL names the load balancer the stage's state holds and the service's tasks can start (image in
ECR, secret with every key), and `/health` reports the release of the task definition the ECS service
runs; the frontend's `/api/*` answers when its origin is that same load balancer.
A scenario can make the next probe of a stage fail by leaving a file `faults/<fault>-<stage>`: `smoke` for the
post-deploy tests, `pinned-smoke` for the Apply's own smoke check (pipelines/smoke_check.py), which the
rehearsal replaces by this probe too; what the Apply does on that failure (pipelines/restore.py) runs for real.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tools.rehearse.terraform import Cloud, Effects, Stack
from tools.rehearse.world import WORLD_FILE_VARIABLE, World


def running_version(world: World, account: str, outputs: dict[str, Any]) -> str | None:
    """APP_VERSION of the task definition the stage's ECS service runs: what its /health would report."""
    ecs = world.client(account, "ecs")
    cluster, service = outputs["backend_cluster_name"]["value"], outputs["backend_service_name"]["value"]
    services = ecs.describe_services(cluster=cluster, services=[service])["services"]
    if not services:
        return None
    definition = ecs.describe_task_definition(taskDefinition=services[0]["taskDefinition"])["taskDefinition"]
    for container in definition["containerDefinitions"]:
        for variable in container.get("environment", []):
            if variable["name"] == "APP_VERSION":
                return str(variable["value"])
    return None


def problems(world: World, stage: str, backend_url: str, frontend_url: str, expect_version: str = "") -> list[str]:
    account = world.states[stage].account
    # One state holds the stage's backend and frontend (stacks/workload.py).
    backend = frontend = world.read_state(stage)
    found: list[str] = []
    balancers = [r["computed"]["dns_name"] for a, r in backend["resources"].items() if a.startswith("aws_lb.")]
    balancer_arns = {r["computed"].get("arn") for a, r in backend["resources"].items() if a.startswith("aws_lb.")}
    services = [r for a, r in backend["resources"].items() if a.startswith("aws_ecs_service.")]
    # An internal load balancer is reached through the frontend's CloudFront VPC origin, at <frontend>/api.
    vpc_origins = [
        endpoint.get("arn")
        for address, resource in frontend["resources"].items()
        if address.startswith("aws_cloudfront_vpc_origin.")
        for endpoint in resource["config"].get("vpc_origin_endpoint_config", [])
    ]
    through_cloudfront = backend_url == f"{frontend_url.rstrip('/')}/api" and bool(vpc_origins)
    if through_cloudfront and not set(vpc_origins) <= balancer_arns:
        found.append(
            f"{backend_url}: the VPC origin names {', '.join(map(str, vpc_origins))}, no load balancer of {stage}: 502"
        )
    direct = urlparse(backend_url).hostname in balancers or backend_url.startswith("https://api.")
    if not direct and not through_cloudfront:
        found.append(f"BACKEND_URL {backend_url} names no load balancer of {stage} (it has {', '.join(balancers)})")
    if any(service.get("tainted") for service in services):
        found.append(f"the {stage} service never reached steady state: /health answers 503")
    stack = Stack(stage, {}, backend, account, world.region, Cloud(world), lambda _: {})
    stack.desired = {a: r["config"] for a, r in backend["resources"].items()}
    found += Effects(stack, world.aws_side(account)).tasks_cannot_start()
    if expect_version:
        version = running_version(world, account, backend.get("outputs") or {})
        if version != expect_version:
            found.append(f"{backend_url}/health reports release {version!r}, not {expect_version!r}")
    origins = [
        origin["domain_name"]
        for address, resource in frontend["resources"].items()
        if address.startswith("aws_cloudfront_distribution.")
        for origin in resource["config"].get("origin", [])
        if str(origin.get("domain_name", "")).endswith(".elb.amazonaws.com")
    ]
    stale = [origin for origin in origins if origin not in balancers]
    if stale:
        found.append(f"{frontend_url}/api/* goes to {', '.join(stale)}, a load balancer that no longer exists: 502")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rehearse.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--backend-url", required=True)
    parser.add_argument("--frontend-url", required=True)
    parser.add_argument("--expect-version", default="", help="the release /health must report (EXPECT_VERSION)")
    parser.add_argument("--fault", default="smoke", help="which injected fault file fails this probe once")
    args = parser.parse_args(argv)
    world = World.load(Path(os.environ[WORLD_FILE_VARIABLE]))
    fault = Path(os.environ[WORLD_FILE_VARIABLE]).parent / "faults" / f"{args.fault}-{args.stage}"
    if fault.exists():
        fault.unlink()
        print(f"error: {args.stage} smoke test failed: GET {args.backend_url}/health answered 500 (injected)")
        return 1
    found = problems(world, args.stage, args.backend_url, args.frontend_url, args.expect_version)
    for problem in found:
        print(f"error: {problem}")
    if not found:
        print(f"{args.stage}: {args.backend_url}/health 200, {args.frontend_url} 200, /api/* reaches the backend")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
