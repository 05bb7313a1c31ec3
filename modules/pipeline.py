"""The CodePipeline V2 that takes a commit from the branch through tests, beta, gamma and prod (R4, R10).

What each action runs lives in the repository (`pipelines/buildspecs/`; the privileged ones are inlined
into their projects by the pipeline stack); this module only decides the order, what each action receives
and hands on, and which CodeBuild project (so which role) runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdktn import ITerraformDependable
from cdktn_provider_aws.codepipeline import (
    Codepipeline,
    CodepipelineArtifactStore,
    CodepipelineArtifactStoreEncryptionKey,
    CodepipelineStage,
    CodepipelineStageAction,
    CodepipelineStageBeforeEntry,
    CodepipelineStageBeforeEntryCondition,
    CodepipelineStageBeforeEntryConditionRule,
    CodepipelineStageBeforeEntryConditionRuleRuleTypeId,
    CodepipelineTrigger,
    CodepipelineTriggerGitConfiguration,
    CodepipelineTriggerGitConfigurationPush,
    CodepipelineTriggerGitConfigurationPushBranches,
    CodepipelineTriggerGitConfigurationPushFilePaths,
)
from constructs import Construct

# The buildspecs the pipeline's CodeBuild projects run, by project; tests assert each file exists.
BUILDSPECS: dict[str, str] = {
    "update-pipeline": "pipelines/buildspecs/update_pipeline.yml",
    "test": "pipelines/buildspecs/test.yml",
    "build": "pipelines/buildspecs/build.yml",
    # Every Plan (read-only) and every Apply run deploy.yml, each with its own project and role: "deploy" is
    # the Apply of the stage in the pipeline's account, "apply-<stage>" that of each cross-account stage.
    "plan": "pipelines/buildspecs/deploy.yml",
    "deploy": "pipelines/buildspecs/deploy.yml",
    "smoke": "pipelines/buildspecs/smoke.yml",
    "drift": "pipelines/buildspecs/drift.yml",
    # Answers a stage's approval itself when its plan needs no person (pipelines/review.py).
    "review": "pipelines/buildspecs/review.yml",
}
# The projects with rights over a stage or the pipeline: they run their buildspec inline, as the pipeline stack
# pinned it, and only the toolkit whose hash it pinned (modules/pipeline_toolkit.py); the others run the
# commit's own buildspec, without such rights.
PIPELINE_OWNED = frozenset({"update-pipeline", "plan", "deploy", "drift", "review"})
# Terraform release every buildspec installs (TERRAFORM_VERSION; the install script verifies its SHA-256).
TERRAFORM_VERSION = "1.13.4"
# What deploy.yml exports in MODE=plan (CodeBuild exported-variables); the approval message quotes them.
PLAN_HEADLINE_VARIABLE = "PLAN_HEADLINE"
PLAN_SUMMARY_URL_VARIABLE = "PLAN_SUMMARY_URL"
# The SHA-256 of the Plan action's manifest.json, which lists the SHA-256 of every saved plan.
PLAN_SHA256_VARIABLE = "PLAN_SHA256"
# What the Bake action after a stage found (pipelines/bake.py): the next stage's approval quotes it.
BAKE_RESULT_VARIABLE = "BAKE_RESULT"

# The manual approval in every stage, between its Plan and its Apply; Review answers it when no person is needed.
APPROVE_ACTION = "Approve"
# Commits that change only these paths start no execution (AWS's trigger glob syntax, in which `**` crosses
# directories and excludes win over includes: https://docs.aws.amazon.com/codepipeline/latest/userguide/syntax-glob.html,
# https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_GitFilePathFilterCriteria.html).
DOCUMENTATION_PATHS = ("docs/**", "**.md")
SOURCE_ACTION = "Source"
SOURCE_NAMESPACE = "SourceVariables"
SOURCE_ARTIFACT = "Source"
BUILD_ARTIFACT = "Build"
# What build.yml exports: the image's tag (its content's SHA-256, the release's name) and ECR's digest of it.
BUILD_NAMESPACE = "BuildVariables"
IMAGE_TAG_VARIABLE = "IMAGE_TAG"
IMAGE_DIGEST_VARIABLE = "IMAGE_DIGEST"


@dataclass(frozen=True, kw_only=True)
class StageDeployment:
    """One stage the pipeline deploys, in order; its differences come from StageConfig."""

    name: str
    approval_before_apply: bool
    post_deploy_tests: str
    # Minutes the stage's alarms must stay quiet after its tests before the next stage (StageConfig.bake_minutes).
    bake_minutes: int = 0
    # When the stage's Apply may start: a DeploymentWindow cron and its time zone (StageConfig), or any time.
    deployment_window: str | None = None
    deployment_window_time_zone: str = "UTC"

    @property
    def title(self) -> str:
        return self.name.capitalize()

    @property
    def approval(self) -> str:
        """The stage's approval action, `<Stage>/Approve`."""
        return f"{self.title}/{APPROVE_ACTION}"

    @property
    def person_approves(self) -> str:
        """What needs a person's approval (pipelines/review.py): any change, or only a broadening one."""
        return "changes" if self.approval_before_apply else "broadening"


@dataclass(frozen=True, kw_only=True)
class PipelineProjects:
    """CodeBuild project names, one per kind of work, so one role per kind of permission: `plan` reads every
    stage and writes none; `apply` holds one project per stage name, each the only one that stage's deploy
    role trusts, so prod's write rights exist only in prod's Apply, after its approval."""

    update_pipeline: str
    test: str
    build: str
    plan: str
    review: str
    apply: Mapping[str, str]
    post_deploy_tests: str


def codebuild_action(
    name: str,
    *,
    project: str,
    inputs: Sequence[str],
    outputs: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    run_order: int = 1,
    namespace: str | None = None,
) -> CodepipelineStageAction:
    configuration = {"ProjectName": project}
    if len(inputs) > 1:
        configuration["PrimarySource"] = inputs[0]
    if environment:
        configuration["EnvironmentVariables"] = json.dumps(
            [{"name": key, "value": value, "type": "PLAINTEXT"} for key, value in environment.items()]
        )
    return CodepipelineStageAction(
        name=name,
        category="Build",
        owner="AWS",
        provider="CodeBuild",
        version="1",
        run_order=run_order,
        input_artifacts=list(inputs),
        output_artifacts=list(outputs) or None,
        namespace=namespace,
        configuration=configuration,
    )


class DeliveryPipeline(Construct):
    """Source, Test, Build, UpdatePipeline, then per deployment: plan, [a person's look], apply, test, [bake].

    UpdatePipeline comes after Test and Build: a pipeline change is applied only from a tested commit, and
    from the stack Build synthesized, so the action with rights over the pipeline runs none of the commit's
    code (modules/pipeline_toolkit.py).

    Every apply consumes the saved plan its own stage produced from the Build artifact, so what is
    applied is exactly what was planned (and, where approval is required, approved). A failed action
    fails its stage and the execution stops there: later stages never see that commit (R4.5, R10.4).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        role_arn: str,
        artifact_bucket: str,
        kms_key_arn: str,
        connection_arn: str,
        repository: str,
        branch: str,
        projects: PipelineProjects,
        deployments: Sequence[StageDeployment],
        depends_on: Sequence[ITerraformDependable] = (),
    ) -> None:
        """`depends_on`: what the pipeline names only by name (its CodeBuild projects) or needs in place
        before it runs (its role's policy): CreatePipeline starts an execution at once, whose actions
        fail if a project does not exist yet, and Terraform sees no reference that would order them."""
        super().__init__(scope, construct_id)
        stages = [
            *self._commit_stages(
                connection_arn=connection_arn, repository=repository, branch=branch, projects=projects
            ),
            *(
                self._deployment_stage(
                    deployment, projects, previous.title if previous and previous.bake_minutes else None
                )
                for previous, deployment in zip([None, *deployments], deployments, strict=False)
            ),
        ]
        self.pipeline = Codepipeline(
            self,
            "pipeline",
            name=name,
            pipeline_type="V2",
            # QUEUED keeps commit order: each stage processes one execution at a time, and the next waits
            # to enter it ("Executions are processed one by one in the order that they are queued";
            # https://docs.aws.amazon.com/codepipeline/latest/userguide/concepts-how-it-works.html).
            # SUPERSEDED would let a newer commit overtake an older one and skip it on its way to prod.
            # The lock is per stage, not per pipeline, so each stage holds its plan, approval and apply
            # (_deployment_stage; docs/pipeline.md, "Two pushes close together").
            execution_mode="QUEUED",
            role_arn=role_arn,
            artifact_store=[
                CodepipelineArtifactStore(
                    location=artifact_bucket,
                    type="S3",
                    encryption_key=CodepipelineArtifactStoreEncryptionKey(id=kms_key_arn, type="KMS"),
                )
            ],
            trigger=[
                CodepipelineTrigger(
                    provider_type="CodeStarSourceConnection",
                    git_configuration=CodepipelineTriggerGitConfiguration(
                        source_action_name=SOURCE_ACTION,
                        push=[
                            CodepipelineTriggerGitConfigurationPush(
                                branches=CodepipelineTriggerGitConfigurationPushBranches(includes=[branch]),
                                # A commit that changes only documentation deploys nothing: it starts nothing.
                                file_paths=CodepipelineTriggerGitConfigurationPushFilePaths(
                                    includes=["**"], excludes=list(DOCUMENTATION_PATHS)
                                ),
                            )
                        ],
                    ),
                )
            ],
            stage=stages,
            depends_on=list(depends_on),
        )

    @staticmethod
    def _commit_stages(
        *, connection_arn: str, repository: str, branch: str, projects: PipelineProjects
    ) -> list[CodepipelineStage]:
        """Source, Test, Build and UpdatePipeline: what every commit goes through before any stage."""
        source = CodepipelineStageAction(
            name=SOURCE_ACTION,
            category="Source",
            owner="AWS",
            provider="CodeStarSourceConnection",
            version="1",
            output_artifacts=[SOURCE_ARTIFACT],
            namespace=SOURCE_NAMESPACE,
            configuration={
                "ConnectionArn": connection_arn,
                "FullRepositoryId": repository,
                "BranchName": branch,
                "OutputArtifactFormat": "CODE_ZIP",
            },
        )
        return [
            CodepipelineStage(name="Source", action=[source]),
            CodepipelineStage(
                name="Test",
                action=[codebuild_action("Test", project=projects.test, inputs=[SOURCE_ARTIFACT])],
            ),
            CodepipelineStage(
                name="Build",
                action=[
                    codebuild_action(
                        "Build",
                        project=projects.build,
                        inputs=[SOURCE_ARTIFACT],
                        outputs=[BUILD_ARTIFACT],
                        namespace=BUILD_NAMESPACE,
                    )
                ],
            ),
            CodepipelineStage(
                name="UpdatePipeline",
                action=[
                    codebuild_action(
                        "UpdatePipeline",
                        project=projects.update_pipeline,
                        # The toolkit comes from Source (checked against its pinned hash), the stack from Build.
                        inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT],
                        # The self-update restarts the pipeline on its new definition and stops this execution.
                        environment={"PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}"},
                    )
                ],
            ),
        ]

    @staticmethod
    def _deployment_stage(
        deployment: StageDeployment, projects: PipelineProjects, baked_before: str | None
    ) -> CodepipelineStage:
        """`<Stage>`: Plan; then Review beside Approve; then Apply, tests and, where the stage bakes, Bake.

        Plan, approval and apply share one CodePipeline stage because QUEUED mode locks stages, not the
        pipeline: "When a pipeline execution starts to run through a pipeline, it enters one stage at a time
        and locks the stage while all action executions in the stage are running"
        (https://docs.aws.amazon.com/codepipeline/latest/userguide/pipelines-stop.html). So no newer execution
        plans a stage while an older one waits for its approval or applies it, and each Apply applies a plan
        made against the state the previous release left.

        Every stage has an approval. Review (pipelines/review.py) answers it itself when the plan needs no
        person, as CDK Pipelines' permissions-broadening check does: a stage with `approval_before_apply`
        needs one when its plan or frontend build changes anything, the others when the plan broadens what
        the stage may do. Apply accepts the Review role's answer only for such a plan, and a person's only from
        the stage's approver roles (pipelines/approval_check.py). `baked_before`: the stage whose Bake this
        one's approval quotes."""
        title = deployment.title
        window = (
            window_condition(deployment.deployment_window, deployment.deployment_window_time_zone)
            if deployment.deployment_window
            else None
        )
        return CodepipelineStage(
            name=title,
            action=[
                _plan_action(deployment, projects, baked_before),
                _review_action(deployment, projects),
                _approval_action(deployment, baked_before),
                *_apply_actions(deployment, projects),
            ],
            before_entry=window,
        )


def _plan_namespace(deployment: StageDeployment) -> str:
    return f"{deployment.title}Plan"


def _plan_action(
    deployment: StageDeployment, projects: PipelineProjects, baked_before: str | None
) -> CodepipelineStageAction:
    return codebuild_action(
        "Plan",
        project=projects.plan,
        inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT],
        outputs=[_plan_namespace(deployment)],
        environment={
            "STAGE": deployment.name,
            "MODE": "plan",
            # Held by CodePipeline, not by the artifact: the preflight refuses stacks that run another image.
            "IMAGE_DIGEST": f"#{{{BUILD_NAMESPACE}.{IMAGE_DIGEST_VARIABLE}}}",
            **({"BAKE_RESULT": f"#{{{baked_before}Bake.{BAKE_RESULT_VARIABLE}}}"} if baked_before else {}),
        },
        run_order=1,
        namespace=_plan_namespace(deployment),
    )


def _review_action(deployment: StageDeployment, projects: PipelineProjects) -> CodepipelineStageAction:
    """Beside the approval (the same run order, so its token exists while Review runs): approves it when the
    plan needs no person, and otherwise leaves it to one."""
    return codebuild_action(
        "Review",
        project=projects.review,
        inputs=[SOURCE_ARTIFACT, _plan_namespace(deployment)],
        environment={
            "STAGE": deployment.name,
            "APPROVAL": deployment.approval,
            "PERSON_APPROVES": deployment.person_approves,
            "APPROVED_MANIFEST_SHA256": f"#{{{_plan_namespace(deployment)}.{PLAN_SHA256_VARIABLE}}}",
            "PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
            # What Review's mail to the approvers names, when one is needed.
            "COMMIT_ID": f"#{{{SOURCE_NAMESPACE}.CommitId}}",
            "PLAN_SUMMARY_URL": f"#{{{_plan_namespace(deployment)}.{PLAN_SUMMARY_URL_VARIABLE}}}",
        },
        run_order=2,
    )


def _approval_action(deployment: StageDeployment, baked_before: str | None) -> CodepipelineStageAction:
    title, plan_namespace = deployment.title, _plan_namespace(deployment)
    bake_note = f" {baked_before} bake: #{{{baked_before}Bake.{BAKE_RESULT_VARIABLE}}}." if baked_before else ""
    who = (
        "A person approves any change."
        if deployment.approval_before_apply
        else "A person approves a plan that broadens what the stage may do; Review approves any other."
    )
    return CodepipelineStageAction(
        name=APPROVE_ACTION,
        category="Approval",
        owner="AWS",
        provider="Manual",
        version="1",
        run_order=2,
        configuration={
            "CustomData": (
                f"{title} plan of commit #{{{SOURCE_NAMESPACE}.CommitId}}: "
                f"#{{{plan_namespace}.{PLAN_HEADLINE_VARIABLE}}}.{bake_note} {who} Approving applies exactly this plan."
            ),
            "ExternalEntityLink": f"#{{{plan_namespace}.{PLAN_SUMMARY_URL_VARIABLE}}}",
        },
    )


def _apply_actions(deployment: StageDeployment, projects: PipelineProjects) -> list[CodepipelineStageAction]:
    """Apply, the post-deploy tests and, where the stage bakes, Bake: in that order, after the approval.
    Who may approve what is the Apply project's own environment (its changes are an administrator's)."""
    plan_namespace, outputs_artifact = _plan_namespace(deployment), f"{deployment.title}Outputs"
    actions = [
        codebuild_action(
            "Apply",
            project=projects.apply[deployment.name],
            inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT, plan_namespace],
            outputs=[outputs_artifact],
            environment={
                "STAGE": deployment.name,
                "MODE": "apply",
                # What Plan made, as CodePipeline recorded it: a rewritten plans artifact is refused.
                "APPROVED_MANIFEST_SHA256": f"#{{{plan_namespace}.{PLAN_SHA256_VARIABLE}}}",
                # The summary the approval linked to: Apply refuses it if it changed since Plan wrote it.
                "PLAN_SUMMARY_URL": f"#{{{plan_namespace}.{PLAN_SUMMARY_URL_VARIABLE}}}",
                # Which execution deployed the stage (its release record, and whose approval counts).
                "PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
            },
            run_order=3,
        ),
        codebuild_action(
            f"{deployment.post_deploy_tests.capitalize()}Tests",
            project=projects.post_deploy_tests,
            inputs=[SOURCE_ARTIFACT, outputs_artifact],
            environment={
                "STAGE": deployment.name,
                "TEST_SUITE": deployment.post_deploy_tests,
                # The release /health must report: the tag Build gave the image, never recomputed from source.
                "EXPECT_VERSION": f"#{{{BUILD_NAMESPACE}.{IMAGE_TAG_VARIABLE}}}",
            },
            run_order=4,
        ),
    ]
    if deployment.bake_minutes:
        # Read-only: the stage's alarms, through its plan role, for as long as the stage bakes.
        actions.append(
            codebuild_action(
                "Bake",
                project=projects.plan,
                # deploy.yml reads the Build input's location before choosing its MODE.
                inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT],
                environment={
                    "STAGE": deployment.name,
                    "MODE": "bake",
                    "BAKE_MINUTES": str(deployment.bake_minutes),
                },
                run_order=5,
                namespace=f"{deployment.title}Bake",
            )
        )
    return actions


def window_condition(cron: str, time_zone: str) -> CodepipelineStageBeforeEntry:
    """Enter the stage inside the DeploymentWindow `cron`, read in `time_zone`; outside it, wait for it."""
    return CodepipelineStageBeforeEntry(
        condition=CodepipelineStageBeforeEntryCondition(
            # Outside the window the execution WAITS at this entry condition and enters the stage when the
            # window opens: no one retries. AWS's rule reference, on a DeploymentWindow rule beside a
            # CloudWatchAlarm rule in an entry condition: "it is possible that the CloudWatchAlarm alarm
            # might succeed before the deployment window for the DeploymentWindow rule opens. After the
            # deployment window opens, CodePipeline does not check the CloudWatchAlarm alarm again."
            # https://docs.amazonaws.cn/en_us/codepipeline/latest/userguide/rule-reference-DeploymentWindow.html
            # `result` engages only on a failed condition: "The stage performs the specified result only
            # when the condition fails."
            # https://docs.aws.amazon.com/codepipeline/latest/userguide/concepts-how-it-works-conditions.html
            # Entry conditions' results are "Fail or Skip":
            # https://docs.aws.amazon.com/codepipeline/latest/userguide/stage-conditions.html
            # FAIL, not SKIP: a skipped Prod would promote an unapplied release, and only LambdaInvoke and
            # VariableCheck rules may skip. docs/pipeline.md "Deployment window".
            # The window gates the stage's entry, so its Plan: an approval a person gives after the window
            # closed still applies (docs/fidelity.md).
            result="FAIL",
            rule=[
                CodepipelineStageBeforeEntryConditionRule(
                    name="DeploymentWindow",
                    rule_type_id=CodepipelineStageBeforeEntryConditionRuleRuleTypeId(
                        category="Rule", owner="AWS", provider="DeploymentWindow", version="1"
                    ),
                    configuration={"Cron": cron, "TimeZone": time_zone},
                )
            ],
        )
    )
