"""The names both wings share: what the synth (main.py, stacks/, modules/) creates and the pipeline's scripts
(pipelines/, tools/) later find by name, so the two agree because they build each name in one place.

Both wings import it, so imports run down only: no stack or construct imports a pipeline script for a name,
no script imports a stack. Plain functions and constants, standard library only (no cdktn, no boto3): the
pinned pipeline toolkit holds it (modules/pipeline_toolkit.py's `TOOLKIT_PATHS`), so the privileged actions
import it at run time without the synth's dependencies.

The bootstrap stacks' version, readable without cdktn (like AWS CDK's BootstrapVersion):
`bootstrap-<stage>` writes `BOOTSTRAP_VERSION` into the SSM parameter `bootstrap_version_parameter` names; a
pipeline script compares the two before it deploys, so a stage whose administrator has not applied the
current bootstrap stops with a clear message instead of failing halfway through an apply. Bump the number
whenever a bootstrap stack's resources change (tests/infra/test_bootstrap.py insists).

The SSM String parameters, in the pipeline account, that the deploy action and the drift check share: the
`pipeline` stack creates them with a placeholder value and ignores later changes of that value;
`python -m pipelines.drift` writes and reads them.
"""

from __future__ import annotations

BOOTSTRAP_VERSION = 5

# The deployment stages, in promotion order.
STAGE_NAMES: tuple[str, ...] = ("beta", "gamma", "prod")

# The value the pipeline stack creates the parameters with: no commit deployed yet, no drift published.
NEVER_DEPLOYED = "never-deployed"
NOTHING_PUBLISHED = "none"


def parameter_arn(name: str, *, region: str, account_id: str) -> str:
    """A parameter's ARN (it drops the name's leading slash)."""
    return f"arn:aws:ssm:{region}:{account_id}:parameter{name}"


def bootstrap_version_parameter(app_name: str, stage_name: str) -> str:
    """The SSM String parameter holding the stage account's applied bootstrap version."""
    return f"/{app_name}/{stage_name}/bootstrap-version"


def bootstrap_version_parameter_arn(app_name: str, stage_name: str, *, region: str, account_id: str) -> str:
    """Its ARN."""
    return parameter_arn(bootstrap_version_parameter(app_name, stage_name), region=region, account_id=account_id)


def deployed_commit_parameter(app_name: str, stage_name: str) -> str:
    """The commit id the stage's last successful Apply applied, written by the deploy action."""
    return f"/{app_name}/{stage_name}/deployed-commit"


def release_parameter(app_name: str, stage_name: str) -> str:
    """What the stage's last successful Apply deployed (pipelines/release.py's JSON record), for `make status`."""
    return f"/{app_name}/{stage_name}/release"


def drift_digest_parameter(app_name: str, stage_name: str) -> str:
    """The digest of the last drift report (or check failure) mailed for the stage, so it is mailed once."""
    return f"/{app_name}/{stage_name}/drift-digest"


# -- what the pipeline keeps in its artifact bucket, besides CodePipeline's own artifacts -------------------
# The summary each Plan publishes for its approval (pipelines/publish_summary.py): `plan-summaries/<stage>/`.
PLAN_SUMMARIES_PREFIX = "plan-summaries"
# The stack JSON each stage's last successful Apply applied (`python -m pipelines.drift store-applied`), which the
# drift check plans: it lives as long as the stage runs it, so the bucket's expiration never reaches it.
APPLIED_PREFIX = "applied"


def applied_stack_key(stage_name: str) -> str:
    """`applied/<stage>/cdk.tf.json`: the object key of the stack JSON the stage's last Apply applied."""
    return f"{APPLIED_PREFIX}/{stage_name}/cdk.tf.json"


# cdktf.json's imageTag: what a synthesis without CANVALO_IMAGE_TAG names. No build ever pushes it, so the
# stage stacks refuse to plan it and the preflight names the command that builds a real one.
UNRELEASED_IMAGE_TAG = "unreleased"

# -- what the pipeline stack hands its actions ----------------------------------------------------------
# Stage data is read once, at synth: the pipeline stack writes what each action needs into the environment
# of its CodeBuild project (stacks/run_environment.py), and the scripts under pipelines/ read only that,
# never cdktf.json. So the pinned toolkit (modules/pipeline_toolkit.py) is code only: a stage's sizes, bake
# or window change no project at all, and a change of what the actions are told (an account, so a role ARN; a
# region; the app name) changes the projects' environment, which the pipeline's roles' policies name anyway.
APP_NAME_VARIABLE = "APP_NAME"
# The pipeline account's region: where the release records and drift digests (SSM) live.
PIPELINE_REGION_VARIABLE = "PIPELINE_REGION"
# The pipeline's artifact bucket: the plan summaries and the applied stacks (above) are written there.
ARTIFACT_BUCKET_VARIABLE = "ARTIFACT_BUCKET"
# The value of a role variable for a stage that is worked in as the action's own role (beta, R4.8).
OWN_ROLE = "own"


def stage_variable(stage_name: str, what: str) -> str:
    """`<STAGE>_<WHAT>`: one stage's value in an action's environment (`GAMMA_PLAN_ROLE_ARN`)."""
    return f"{stage_name.upper()}_{what.upper()}"


# What each stage hands on, by `what`: its region, its read-only plan role and its deploy role (or OWN_ROLE),
# and the prefix of its resource names (`<app>-<stage>-`), which its alarms' names start with.
STAGE_RUN_VALUES = ("region", "plan_role_arn", "deploy_role_arn", "alarm_prefix")
