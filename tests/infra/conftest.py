"""Synthesize every stack of the fixture configuration once per test session (once across xdist workers).

The synth runs with sentinel secret values in the environment, so that the sentinel test can prove
no secret reaches cdktf.out whatever a stack might read.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stacks.config import ProjectConfig
from tests.support.config import fixture_project

if TYPE_CHECKING:
    from cdktn import App, TerraformStack

SENTINELS = {
    "SUPABASE_URL": "https://sentinel-supabase-url.invalid",
    "SUPABASE_SERVICE_KEY": "sentinel-service-key-7f3a9c",
    "SUPABASE_PUB_KEY": "sentinel-pub-key-51be02",
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-d41d8c",
}

Document = dict[str, Any]


def synth_into(outdir: Path, environ: dict[str, str]) -> None:
    from main import synthesize

    synthesize(fixture_project(environ), outdir)


@pytest.fixture(scope="session")
def synth_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own basetemp inside the run's folder: share the run's folder.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = shared / "cdktf.out"
    done = shared / "cdktf.out.done"
    with (shared / "cdktf.out.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            environ = dict(os.environ) | SENTINELS
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(environ)
            try:
                synth_into(outdir, environ)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            done.touch()
    return outdir


@pytest.fixture(scope="session")
def stacks(synth_outdir: Path) -> dict[str, Document]:
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted((synth_outdir / "stacks").glob("*/cdk.tf.json"))
    }


@pytest.fixture(scope="session")
def standin(stacks: dict[str, Document], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin directory holding the stand-in AWS provider (tools/standin_provider) for every type the
    stacks use: built once per session (per xdist worker), shared by the engine's validate and plan tests."""
    from tools.standin_provider import plugin_dir

    directory = tmp_path_factory.mktemp("plugins")
    plugin_dir.build(directory, *plugin_dir.types_of(stacks.values()))
    return directory


def resources(document: Document, kind: str) -> dict[str, Document]:
    """The resources of one Terraform type in a stack, by logical name."""
    return dict(document.get("resource", {}).get(kind, {}))


def data_sources(document: Document, kind: str) -> dict[str, Document]:
    return dict(document.get("data", {}).get(kind, {}))


def one(document: Document, kind: str) -> Document:
    found = list(resources(document, kind).values())
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def policy_statements(document: Document, reference: str) -> list[Document]:
    """The statements of the aws_iam_policy_document a `${data.aws_iam_policy_document.X.json}` names."""
    name = reference.removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    return list(data_sources(document, "aws_iam_policy_document")[name]["statement"])


STAGES = ("beta", "gamma", "prod")
# The construct ids of a stage's parts in its one stack (stacks/workload.py): every resource and data source
# of a part has a logical name starting `<part>_`.
NETWORK, BACKEND, FRONTEND = "network", "api", "frontend"


def part(document: Document, prefix: str) -> Document:
    """The stage stack's document with only one part's resources and data sources (its outputs all kept), so
    a part's tests read it as they would a stack of its own. References into other parts stay as they are."""

    def only_part(blocks: dict[str, dict[str, Document]]) -> dict[str, dict[str, Document]]:
        kept = {
            kind: {name: body for name, body in named.items() if name.startswith(f"{prefix}_")}
            for kind, named in blocks.items()
        }
        return {kind: named for kind, named in kept.items() if named}

    return {
        **document,
        "resource": only_part(document.get("resource", {})),
        "data": only_part(document.get("data", {})),
    }


def synth_pipeline_stack(outdir: Path, project: ProjectConfig) -> Document:
    """Only the pipeline stack of `project`, synthesized into `outdir`: its JSON."""
    from stacks.pipeline import PipelineStack

    return _synth_one(outdir, lambda app: PipelineStack(app, project=project))


def synth_workload_stack(outdir: Path, project: ProjectConfig, stage: str) -> Document:
    """Only the workload stack `stage` of `project`, synthesized into `outdir`: its JSON."""
    from stacks.workload import WorkloadStack

    (config,) = [s for s in project.stages if s.name == stage]
    return _synth_one(outdir, lambda app: WorkloadStack(app, project=project, stage=config))


def _synth_one(outdir: Path, build: Callable[[App], TerraformStack]) -> Document:
    from cdktn import App

    from tools.requirements import PROJECT_ROOT

    target_versions = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["targetVersions"]
    app = App(outdir=str(outdir), context={"targetVersions": target_versions})
    stack = build(app)
    app.synth()
    document: Document = json.loads((outdir / "stacks" / stack.node.id / "cdk.tf.json").read_text())
    return document


def stacks_holding(stacks: dict[str, Document], kind: str) -> dict[str, Document]:
    """The stacks with a resource of type `kind`, by name: tests that find what they check by type hold
    however the stages' resources are split into stacks."""
    return {name: document for name, document in stacks.items() if resources(document, kind)}
