"""Synthesize every Canvalo stack into cdktf.out/: `make synth`, or `cdktn synth` through cdktf.json."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# The AWS provider's Python bindings are hundreds of megabytes of source: recompiling the modules a
# synth imports costs about a second each time, so keep their bytecode even where the environment sets
# PYTHONDONTWRITEBYTECODE (this machine does).
sys.dont_write_bytecode = False

from stacks.config import ConfigError, ProjectConfig, load_from_environment  # noqa: E402

if TYPE_CHECKING:
    from cdktn import App, TerraformStack

PROJECT_ROOT = Path(__file__).resolve().parent


def wire(app: App, project: ProjectConfig) -> list[TerraformStack]:
    """Every stack of every stage, built from its config; the order is the deploy order."""
    from stacks.bootstrap import BootstrapStack
    from stacks.pipeline import PipelineStack
    from stacks.workload import WorkloadStack

    stacks: list[TerraformStack] = []
    for stage in project.stages:
        stacks.append(BootstrapStack(app, project=project, stage=stage))
        stacks.append(WorkloadStack(app, project=project, stage=stage))
    stacks.append(PipelineStack(app, project=project))
    return stacks


@dataclass(frozen=True)
class StackSummary:
    name: str
    account_id: str
    region: str
    resources: int


def synthesize(project: ProjectConfig, outdir: Path) -> list[StackSummary]:
    # The Terraform releases the synthesized JSON targets: S3 native locking (use_lockfile) needs 1.10.
    target_versions = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["targetVersions"]
    # cdktn starts the jsii runtime (a Node.js process) on import: only after the config is known good,
    # so that a bad setting answers at once.
    from cdktn import App

    app = App(outdir=str(outdir), context={"targetVersions": target_versions})
    stacks = wire(app, project)
    app.synth()
    summaries = []
    for stack in stacks:
        name = stack.node.id
        document = json.loads((outdir / "stacks" / name / "cdk.tf.json").read_text())
        provider = document["provider"]["aws"][0]
        resources = sum(len(instances) for instances in document.get("resource", {}).values())
        summaries.append(StackSummary(name, provider["allowed_account_ids"][0], provider["region"], resources))
    return summaries


def format_table(summaries: list[StackSummary]) -> str:
    header = ("stack", "account", "region", "resources")
    rows = [header, *((s.name, s.account_id, s.region, str(s.resources)) for s in summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(environ: Mapping[str, str] = os.environ) -> int:
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outdir = Path(environ.get("CDKTF_OUTDIR") or PROJECT_ROOT / "cdktf.out")
    summaries = synthesize(project, outdir)
    print(format_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
