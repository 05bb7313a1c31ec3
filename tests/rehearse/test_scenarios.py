"""The rehearsal's verdicts and its reading of the README: what `make rehearse` decides, without running it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modules.pipeline import DOCUMENTATION_PATHS
from modules.pipeline_toolkit import TOOLKIT_PATHS
from stacks.config import load_project_config
from tools.rehearse.__main__ import (
    A_NEW_IMAGE,
    ACCOUNTS,
    ANOTHER_NEW_IMAGE,
    ATTACKS,
    DEPLOYS_NOTHING,
    DOCUMENTATION_ONLY,
    GAMMA_BAKES_LONGER,
    GROUPS,
    LATER_SCENARIOS,
    Expectation,
    Outcome,
    bootstrap_commands,
    new_release,
)
from tools.rehearse.trigger import Patterns, PushFilter, trigger_refusal
from tools.rehearse.world import REPOSITORY


@pytest.mark.req("R4.5")
def test_an_expected_failure_counts_only_when_it_fails_with_its_defects_words() -> None:
    known = Expectation("bootstrap order", "Invalid principal in policy")
    assert Outcome("first deploy", False, "Error: ... Invalid principal in policy ...", known).as_expected
    assert not Outcome("first deploy", False, "Error: something else broke", known).as_expected
    assert not Outcome("first deploy", True, "", known).as_expected, "a fixed defect must update its expectation"
    assert Outcome("no-op commit", True, "", Expectation()).as_expected
    assert not Outcome("no-op commit", False, "exit 1", Expectation()).as_expected


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["beta", "gamma", "prod"])
def test_the_readme_bootstrap_block_is_run_as_written_for_each_stage(stage: str) -> None:
    commands = bootstrap_commands(stage)
    assert f"make bootstrap STAGE={stage}" in commands
    assert f"--secret-id canvalo/{stage}/backend" in commands and "..." not in commands
    assert all(f"={account}" in commands for account in ACCOUNTS.values())
    assert "#" not in commands, "the README's comments are not commands"


# The files the rehearsal's attack commits edit.
ATTACKED = (
    "cdktf.json",
    "stacks/backend.py",
    "stacks/config.py",
    "stacks/network.py",
    # The stage's outputs (vpc_id, ...) are declared here now that a stage is one stack.
    "stacks/workload.py",
    "pipelines/buildspecs/deploy.yml",
    "pipelines/terraform_stage.py",
)


@pytest.mark.req("R4.3")
@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_still_applies_to_the_code_it_attacks(name: str, tmp_path: Path) -> None:
    """An attack whose edit no longer applies would stop the rehearsal after twenty minutes: know it now."""
    _, change = ATTACKS[name]
    for tracked in ATTACKED:
        (tmp_path / tracked).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY / tracked, tmp_path / tracked)
    change(tmp_path)
    changed = [path for path in ATTACKED if (tmp_path / path).read_text() != (REPOSITORY / path).read_text()]
    assert len(changed) == 1, f"{name} changes {changed}"


@pytest.mark.req("R4.5")
def test_the_bad_releases_commit_still_changes_what_the_image_is_built_from(tmp_path: Path) -> None:
    """Its edit must apply and fall under app/ (the image tag's content), else no task definition changes."""
    target = tmp_path / "app" / "__init__.py"
    target.parent.mkdir()
    shutil.copyfile(REPOSITORY / "app" / "__init__.py", target)
    A_NEW_IMAGE(tmp_path)
    assert target.read_text() != (REPOSITORY / "app" / "__init__.py").read_text()
    assert "app" in (REPOSITORY / "pipelines" / "image_tag.sh").read_text().split("find ", 1)[1].split("-type", 1)[0]


@pytest.mark.req("R10.7")
def test_the_smoke_failure_release_changes_the_image_and_the_frontend_index(tmp_path: Path) -> None:
    """The scenario's release must change app/ (a new image tag) and the index the restore must put back."""
    for tracked in ("app/main.py", "frontend/index.html"):
        (tmp_path / tracked).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY / tracked, tmp_path / tracked)
    new_release(tmp_path)
    for tracked in ("app/main.py", "frontend/index.html"):
        assert (tmp_path / tracked).read_text() != (REPOSITORY / tracked).read_text(), tracked
    assert "smoke failure in prod" in LATER_SCENARIOS
    names = list(LATER_SCENARIOS)
    assert names.index("failure and retry") < names.index("smoke failure in prod") < names.index(next(iter(ATTACKS)))


@pytest.mark.req("R4.1")
def test_the_commit_that_deploys_nothing_starts_the_pipeline_and_the_documentation_commit_does_not(
    tmp_path: Path,
) -> None:
    """The scenarios' two quiet commits: one the trigger ignores, one it starts for that no build or hash reads."""
    tracked = (".gitignore", "docs/pipeline.md")
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY / name, tmp_path / name)
    DEPLOYS_NOTHING(tmp_path)
    DOCUMENTATION_ONLY(tmp_path)
    assert all((tmp_path / name).read_text() != (REPOSITORY / name).read_text() for name in tracked)
    committed = (PushFilter(Patterns(("main",)), Patterns(("**",), DOCUMENTATION_PATHS)),)
    assert trigger_refusal(committed, "main", [".gitignore"]) == ""
    assert trigger_refusal(committed, "main", ["docs/pipeline.md"])
    # Neither the backend image's tag nor the pinned toolkit reads .gitignore: no release, no pipeline change.
    image_inputs = (REPOSITORY / "pipelines" / "image_tag.sh").read_text().split("find ", 1)[1].split("-type", 1)[0]
    assert ".gitignore" not in image_inputs.split()
    assert not {".gitignore", "."} & set(TOOLKIT_PATHS), "a file at the root is in the toolkit only if named"


@pytest.mark.req("R4.4")
def test_the_pipeline_change_in_flight_still_changes_gammas_bake_and_the_releases_still_change_the_image(
    tmp_path: Path,
) -> None:
    """The QUEUED scenarios' edits must apply: two releases under app/ (new image tags), and a stage setting that
    only the pipeline's definition reads (gamma's Bake action), which the loader accepts."""
    for tracked in ("cdktf.json", "app/__init__.py", "app/main.py"):
        (tmp_path / tracked).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY / tracked, tmp_path / tracked)
    GAMMA_BAKES_LONGER(tmp_path)
    A_NEW_IMAGE(tmp_path)
    ANOTHER_NEW_IMAGE(tmp_path)
    for tracked in ("cdktf.json", "app/__init__.py", "app/main.py"):
        assert (tmp_path / tracked).read_text() != (REPOSITORY / tracked).read_text(), tracked
    context = json.loads((tmp_path / "cdktf.json").read_text())["context"]
    assert load_project_config(context, {}).stage("gamma").bake_minutes == 20
    names = list(LATER_SCENARIOS)
    queued = ("two pushes seconds apart", "push while prod waits for approval", "pipeline change in flight")
    assert all(name in names for name in queued)


@pytest.mark.req("R4.5")
def test_make_rehearse_runs_every_scenario_once_in_its_groups_in_the_tables_order() -> None:
    """A scenario missing from the groups would never run in CI; one in both would run twice; a group out of the
    table's order would start a scenario from a state its author did not expect."""
    grouped = [name for group in GROUPS for name in group]
    assert sorted(grouped) == sorted(LATER_SCENARIOS)
    assert len(grouped) == len(set(grouped)) == len(LATER_SCENARIOS)
    order = list(LATER_SCENARIOS)
    assert all([order.index(name) for name in group] == sorted(order.index(name) for name in group) for group in GROUPS)
    assert len(GROUPS) == 2 and all(GROUPS)
