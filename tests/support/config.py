"""The configuration the tests build from: tests/fixtures/context.json, never the committed cdktf.json.

cdktf.json is the administrator's: it may hold the real accounts, another branch or `bootstrapState: s3`,
and none of that may change what a test sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stacks.config import ProjectConfig, load_project_config
from stacks.run_environment import run_environment

FIXTURE_CONTEXT = Path(__file__).resolve().parent.parent / "fixtures" / "context.json"


def fixture_context() -> dict[str, Any]:
    """A fresh copy each call, so that a test may change it freely."""
    context: dict[str, Any] = json.loads(FIXTURE_CONTEXT.read_text())
    return context


def fixture_project(environ: Mapping[str, str] | None = None, **context: Any) -> ProjectConfig:
    """The fixture configuration with `context` keys replaced and `environ`'s CANVALO_* overrides applied."""
    return load_project_config({**fixture_context(), **context}, environ or {})


def hermetic_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """For a process that loads its configuration itself (main.py, tools.frontend_env, make frontend).

    Such a process reads cdktf.json, then lays CDKTF_CONTEXT_JSON over its context key by key; the fixture
    names every key the loader reads, so none of cdktf.json's values shows through.
    """
    return {**environ, "CDKTF_CONTEXT_JSON": json.dumps(fixture_context())}


def action_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the pipeline stack gives an action that works in every stage (stacks/run_environment.py, as the
    plan project gets it), from the fixture configuration, with `extra` laid over it."""
    project = fixture_project()
    return {**run_environment(project, project.stages), **(extra or {})}
