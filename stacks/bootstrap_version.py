"""The bootstrap stacks' version, readable without cdktn (like AWS CDK's BootstrapVersion).

`bootstrap-<stage>` writes `BOOTSTRAP_VERSION` into the SSM parameter `bootstrap_version_parameter`
names; a pipeline script compares the two before it deploys, so a stage whose administrator has not
applied the current bootstrap stops with a clear message instead of failing halfway through an apply.
Bump the number whenever a bootstrap stack's resources change (tests/infra/test_bootstrap.py insists).
"""

from __future__ import annotations

BOOTSTRAP_VERSION = 5


def bootstrap_version_parameter(app_name: str, stage_name: str) -> str:
    """The SSM String parameter holding the stage account's applied bootstrap version."""
    return f"/{app_name}/{stage_name}/bootstrap-version"


def bootstrap_version_parameter_arn(app_name: str, stage_name: str, *, region: str, account_id: str) -> str:
    """Its ARN (a parameter ARN drops the name's leading slash)."""
    return f"arn:aws:ssm:{region}:{account_id}:parameter{bootstrap_version_parameter(app_name, stage_name)}"
