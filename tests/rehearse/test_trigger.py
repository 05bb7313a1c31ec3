"""The rehearsal's push trigger: AWS's glob syntax for file-path filters, and which pushes start an execution."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.pipeline import DOCUMENTATION_PATHS
from tools.rehearse.codebuild import Machine
from tools.rehearse.pipeline import Pipeline, Services, Step
from tools.rehearse.trigger import Patterns, PushFilter, glob_matches, read_push_filters, trigger_refusal
from tools.rehearse.world import MotoServer, StateLocation, World


@pytest.mark.req("R4.1")
@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        # `**` crosses directories: Markdown anywhere, the root's included.
        ("**.md", "README.md", True),
        ("**.md", "docs/a/b.md", True),
        ("**.md", "docs/a/b.mdx", False),
        ("docs/**", "docs/x/y.txt", True),
        ("docs/**", "mydocs/x", False),
        ("docs/**", "app/docs/x", False),
        # `*` stays within one path component.
        ("*.md", "a.md", True),
        ("*.md", "docs/a.md", False),
        ("docs/*", "docs/a.md", True),
        ("docs/*", "docs/a/b.md", False),
        ("**", "app/main.py", True),
        ("**", ".gitignore", True),
        ("{a,b}.py", "a.py", True),
        ("{a,b}.py", "b.py", True),
        ("{a,b}.py", "c.py", False),
        ("{a,b}.py", "ab.py", False),
        ("foo.?", "foo.c", True),
        ("foo.?", "foo.cc", False),
        ("file[0-9].txt", "file7.txt", True),
        ("file[!0-9].txt", "file7.txt", False),
        ("file[!0-9].txt", "fileX.txt", True),
        ("a[/]b", "a/b", False),
        # Escaped, a special character is itself; a regex character is never special.
        ("\\*.md", "*.md", True),
        ("\\*.md", "x.md", False),
        ("a+b.md", "a+b.md", True),
        ("a.md", "aXmd", False),
    ],
)
def test_a_trigger_glob_matches_as_aws_documents(glob: str, path: str, matches: bool) -> None:
    assert glob_matches(glob, path) is matches


@pytest.mark.req("R4.1")
@pytest.mark.parametrize("glob", ["{a,{b,c}}", "{a,b", "[abc", "a[]b"])
def test_a_glob_aws_would_refuse_is_refused(glob: str) -> None:
    with pytest.raises(ValueError, match="glob"):
        glob_matches(glob, "a")


# The committed trigger, in the shape the pipeline stack's state holds it (cdktf's JSON: one block an object,
# repeated blocks a list).
TRIGGER_CONFIG = {
    "trigger": [
        {
            "provider_type": "CodeStarSourceConnection",
            "git_configuration": {
                "source_action_name": "Source",
                "push": [
                    {
                        "branches": {"includes": ["main"]},
                        "file_paths": {"includes": ["**"], "excludes": list(DOCUMENTATION_PATHS)},
                    }
                ],
            },
        }
    ]
}


@pytest.mark.req("R4.1")
def test_the_committed_trigger_starts_for_any_change_but_documentation() -> None:
    filters = read_push_filters(TRIGGER_CONFIG)
    assert filters == (PushFilter(Patterns(("main",)), Patterns(("**",), DOCUMENTATION_PATHS)),)
    assert trigger_refusal(filters, "main", ["docs/pipeline.md", "README.md", "app/README.md"])
    assert trigger_refusal(filters, "main", ["docs/pipeline.md", ".gitignore"]) == "", "one file that counts"
    assert trigger_refusal(filters, "main", ["app/main.py"]) == ""
    why = trigger_refusal(filters, "main", ["docs/pipeline.md"])
    assert "docs/pipeline.md" in why and "excludes ['docs/**', '**.md']" in why
    assert trigger_refusal(filters, "feature", ["app/main.py"]), "another branch"


@pytest.mark.req("R4.1")
def test_without_a_trigger_every_push_starts_and_a_filter_without_file_paths_any_change() -> None:
    assert read_push_filters({}) is None
    assert trigger_refusal(None, "main", ["docs/pipeline.md"]) == ""
    branches_only = read_push_filters(
        {"trigger": [{"git_configuration": [{"push": [{"branches": [{"includes": ["main"]}]}]}]}]}
    )
    assert branches_only == (PushFilter(Patterns(("main",))),), "a list of one block reads as the object"
    assert trigger_refusal(branches_only, "main", ["docs/pipeline.md"]) == ""
    tags_only = read_push_filters({"trigger": [{"git_configuration": {"push": [{"tags": {"includes": ["v*"]}}]}}]})
    assert tags_only == () and trigger_refusal(tags_only, "main", ["app/main.py"]), "a branch push is no tag push"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The pipeline stack's state, in a bucket of moto's: a Source stage on `main` and the committed trigger."""
    account, bucket, key = "444444444444", "canvalo-tfstate-444444444444-eu-west-1", "pipeline/terraform.tfstate"
    source = {
        "name": "Source",
        "action": [
            {
                "name": "Source",
                "category": "Source",
                "configuration": {"BranchName": "main"},
                "output_artifacts": ["Source"],
            }
        ],
    }
    state = {"resources": {"aws_codepipeline.p": {"config": {"name": "p", "stage": [source], **TRIGGER_CONFIG}}}}
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as moto:
        located = World(
            moto.endpoint,
            "eu-west-1",
            accounts={"beta": account},
            states={"pipeline": StateLocation(account, bucket, key)},
        )
        s3 = located.client(account, "s3")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode())
        yield located


def commit(repository: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or, for None, remove) `files` and commit them; the new commit's id."""
    for name, text in files.items():
        path = repository / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "add", "-A"], cwd=repository, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", message], cwd=repository, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.req("R4.1")
def test_a_push_starts_an_execution_unless_it_changes_only_documentation(world: World, tmp_path: Path) -> None:
    repository = tmp_path / "github"
    repository.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repository, check=True)
    first = commit(repository, {"README.md": "r\n", "docs/notes.txt": "n\n", ".gitignore": ".venv/\n"}, "first")
    steps: list[Step] = []
    services = Services(world)
    try:
        pipeline = Pipeline(
            world=world,
            machine=Machine(tmp_path / "machine", tmp_path / "world.json", world.endpoint),
            services=services,
            repository=repository,
            root=tmp_path,
            stand_ins=[],
            record=steps.append,
        )
        # The first push: every file counts as changed, the README too, and .gitignore starts it.
        assert pipeline.push(first) is not None
        documentation = commit(repository, {"README.md": "r2\n", "docs/notes.txt": "n2\n"}, "docs")
        assert pipeline.push(documentation) is None
        (not_started,) = steps
        assert (not_started.stage, not_started.result) == ("(trigger)", "NotStarted")
        assert (
            "README.md, docs/notes.txt" in not_started.detail and "excludes ['docs/**', '**.md']" in not_started.detail
        )
        ignored = commit(repository, {".gitignore": ".venv/\n# a comment\n"}, "a file outside the documentation")
        started = pipeline.push(ignored)
        assert started is not None and started.trigger == ("Webhook", "push")
        # A file moved out of docs/ is a file added outside it.
        moved = commit(repository, {"docs/notes.txt": None, "notes.txt": "n2\n"}, "moved")
        assert pipeline.push(moved) is not None
        # Released again by an operator, a commit starts whatever it changes.
        released = pipeline.release(moved, "arn:aws:sts::444444444444:assumed-role/Administrator/operator")
        assert released.trigger[0] == "StartPipelineExecution"
        assert [e.commit for e in services.queue] == [first, ignored, moved, moved]
    finally:
        services.close()
