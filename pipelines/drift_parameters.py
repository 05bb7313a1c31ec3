"""The SSM String parameters, in the pipeline account, that the deploy action and the drift check share.

The `pipeline` stack creates them with a placeholder value and ignores later changes of that value;
`python -m pipelines.drift` writes and reads them. Kept free of cdktn and boto3 so both import it cheaply.
"""

from __future__ import annotations

# The value the pipeline stack creates the parameters with: no commit deployed yet, no drift published.
NEVER_DEPLOYED = "never-deployed"
NOTHING_PUBLISHED = "none"


def deployed_commit_parameter(app_name: str, stage_name: str) -> str:
    """The commit id the stage's last successful Apply applied, written by the deploy action."""
    return f"/{app_name}/{stage_name}/deployed-commit"


def release_parameter(app_name: str, stage_name: str) -> str:
    """What the stage's last successful Apply deployed (pipelines/release.py's JSON record), for `make status`."""
    return f"/{app_name}/{stage_name}/release"


def drift_digest_parameter(app_name: str, stage_name: str) -> str:
    """The digest of the last drift report (or check failure) mailed for the stage, so it is mailed once."""
    return f"/{app_name}/{stage_name}/drift-digest"


def parameter_arn(name: str, *, region: str, account_id: str) -> str:
    """A parameter's ARN (it drops the name's leading slash)."""
    return f"arn:aws:ssm:{region}:{account_id}:parameter{name}"
