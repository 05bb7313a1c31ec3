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
}
# The projects with rights over a stage or the pipeline: they run their buildspec inline, as the pipeline stack
# pinned it, and only the toolkit whose hash it pinned (modules/pipeline_toolkit.py); the others run the
# commit's own buildspec, without such rights.
PIPELINE_OWNED = frozenset({"update-pipeline", "plan", "deploy", "drift"})
# Terraform release every buildspec installs (TERRAFORM_VERSION; the install script verifies its SHA-256).
TERRAFORM_VERSION = "1.13.4"
# What deploy.yml exports in MODE=plan (CodeBuild exported-variables); the approval message quotes them.
PLAN_HEADLINE_VARIABLE = "PLAN_HEADLINE"
PLAN_SUMMARY_URL_VARIABLE = "PLAN_SUMMARY_URL"
# "true" when the stage's plans broaden what it may do (pipelines/plan_summary.py broadens()).
PLAN_BROADENS_VARIABLE = "PLAN_BROADENS"
# The SHA-256 of the Plan action's manifest.json, which lists the SHA-256 of every saved plan.
PLAN_SHA256_VARIABLE = "PLAN_SHA256"
# "true" when applying the stage's plans and frontend build would change anything: a stage with an approval
# asks for it only then.
PLAN_CHANGES_VARIABLE = "PLAN_CHANGES"
# What the Bake action after a stage found (pipelines/bake.py): the next stage's approval quotes it.
BAKE_RESULT_VARIABLE = "BAKE_RESULT"

# The manual approval of a stage with `approval_before_apply`.
APPROVE_ACTION = "Approve"
SOURCE_ACTION = "Source"
SOURCE_NAMESPACE = "SourceVariables"
SOURCE_ARTIFACT = "Source"
BUILD_ARTIFACT = "Build"


@dataclass(frozen=True, kw_only=True)
class StageDeployment:
    """One stage the pipeline deploys, in order; its differences come from StageConfig."""

    name: str
    approval_before_apply: bool
    post_deploy_tests: str
    # Role name patterns whose sessions may answer the stage's approval (StageConfig.approver_roles).
    approver_roles: Sequence[str] = ()
    # Minutes the stage's alarms must stay quiet after its tests before the next stage (StageConfig.bake_minutes).
    bake_minutes: int = 0
    # When the stage's Apply may start: a DeploymentWindow cron and its time zone (StageConfig), or any time.
    deployment_window: str | None = None
    deployment_window_time_zone: str = "UTC"

    @property
    def title(self) -> str:
        return self.name.capitalize()


@dataclass(frozen=True, kw_only=True)
class PipelineProjects:
    """CodeBuild project names, one per kind of work, so one role per kind of permission: `plan` reads every
    stage and writes none; `apply` holds one project per stage name, each the only one that stage's deploy
    role trusts, so prod's write rights exist only in prod's Apply, after its approval."""

    update_pipeline: str
    test: str
    build: str
    plan: str
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
                stage
                for previous, deployment in zip([None, *deployments], deployments, strict=False)
                for stage in self._deployment_stages(
                    deployment, projects, name, previous.title if previous and previous.bake_minutes else None
                )
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
            # The lock is per stage, not per pipeline: a stage's Plan and Apply are separate stages here,
            # so a newer execution can plan a stage while an older one applies it or waits for its
            # approval, and its saved plan may then be stale at its own Apply (docs/pipeline.md, "Two
            # pushes close together").
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
                                branches=CodepipelineTriggerGitConfigurationPushBranches(includes=[branch])
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
    def _deployment_stages(
        deployment: StageDeployment, projects: PipelineProjects, pipeline_name: str, baked_before: str | None
    ) -> list[CodepipelineStage]:
        """`<Stage>Plan`; then a person's look, in its own stage so that a condition can skip it (conditions
        belong to stages, not actions); then `<Stage>`: Apply, tests and, where the stage bakes, Bake.

        The look: `<Stage>Approval` in a stage with an approval, entered only when its plans or frontend
        build change anything (an empty plan asks nobody); `<Stage>Broadening` in the others, entered only
        when the plan broadens what the stage may do. So an unremarkable commit flows through unattended, and
        one that widens IAM, a network or a policy, or destroys what is not known to be safe, waits for a
        person, in every stage. `baked_before`: the stage whose Bake this one's approval quotes."""
        title = deployment.title
        look = _look_stage(deployment, baked_before)
        window = (
            window_condition(deployment.deployment_window, deployment.deployment_window_time_zone)
            if deployment.deployment_window
            else None
        )
        return [
            CodepipelineStage(name=f"{title}Plan", action=[_plan_action(deployment, projects, baked_before)]),
            look,
            CodepipelineStage(
                name=title,
                action=_apply_actions(deployment, projects, pipeline_name, look.name),
                before_entry=window,
            ),
        ]


def _plan_namespace(deployment: StageDeployment) -> str:
    return f"{deployment.title}Plan"


def _plan_action(
    deployment: StageDeployment, projects: PipelineProjects, baked_before: str | None
) -> CodepipelineStageAction:
    return codebuild_action(
        "Plan",
        project=projects.plan,
        inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT],
        outputs=[f"{deployment.title}Plan"],
        environment={
            "STAGE": deployment.name,
            "MODE": "plan",
            **({"BAKE_RESULT": f"#{{{baked_before}Bake.{BAKE_RESULT_VARIABLE}}}"} if baked_before else {}),
        },
        namespace=_plan_namespace(deployment),
    )


def _look_stage(deployment: StageDeployment, baked_before: str | None) -> CodepipelineStage:
    """The stage of a person's look at the plan, skipped when there is nothing for one to see."""
    title, plan_namespace = deployment.title, _plan_namespace(deployment)
    bake_note = f" {baked_before} bake: #{{{baked_before}Bake.{BAKE_RESULT_VARIABLE}}}." if baked_before else ""

    def approval(name: str, what: str) -> CodepipelineStageAction:
        return CodepipelineStageAction(
            name=name,
            category="Approval",
            owner="AWS",
            provider="Manual",
            version="1",
            configuration={
                "CustomData": (
                    f"{title} plan of commit #{{{SOURCE_NAMESPACE}.CommitId}}: "
                    f"#{{{plan_namespace}.{PLAN_HEADLINE_VARIABLE}}}.{bake_note} {what}"
                ),
                "ExternalEntityLink": f"#{{{plan_namespace}.{PLAN_SUMMARY_URL_VARIABLE}}}",
            },
        )

    if deployment.approval_before_apply:
        return CodepipelineStage(
            name=f"{title}Approval",
            action=[approval(APPROVE_ACTION, "Approving applies exactly this plan.")],
            before_entry=variable_condition("PlanChanges", f"{plan_namespace}.{PLAN_CHANGES_VARIABLE}"),
        )
    return CodepipelineStage(
        name=f"{title}Broadening",
        action=[approval("ConfirmBroadening", "It broadens what the stage may do: approving applies this plan.")],
        before_entry=variable_condition("PlanBroadens", f"{plan_namespace}.{PLAN_BROADENS_VARIABLE}"),
    )


def _apply_actions(
    deployment: StageDeployment, projects: PipelineProjects, pipeline_name: str, look: str
) -> list[CodepipelineStageAction]:
    """Apply, the post-deploy tests and, where the stage bakes, Bake: in that order."""
    plan_namespace, outputs_artifact = _plan_namespace(deployment), f"{deployment.title}Outputs"
    # Apply goes on only if one of the stage's approvers answered its approval, or the approval was
    # skipped because the plans it would have shown change nothing (pipelines/approval_check.py).
    who_approves = (
        {
            "APPROVAL": f"{look}/{APPROVE_ACTION}",
            "APPROVER_ROLES": ",".join(deployment.approver_roles),
            "PIPELINE_NAME": pipeline_name,
        }
        if deployment.approval_before_apply
        else {}
    )
    actions = [
        codebuild_action(
            "Apply",
            project=projects.apply[deployment.name],
            inputs=[SOURCE_ARTIFACT, BUILD_ARTIFACT, f"{deployment.title}Plan"],
            outputs=[outputs_artifact],
            environment={
                "STAGE": deployment.name,
                "MODE": "apply",
                # What Plan made, as CodePipeline recorded it: a rewritten plans artifact is refused.
                "APPROVED_MANIFEST_SHA256": f"#{{{plan_namespace}.{PLAN_SHA256_VARIABLE}}}",
                # Which execution deployed the stage (its release record); CodeBuild is not told it.
                "PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
                **who_approves,
            },
            run_order=1,
        ),
        codebuild_action(
            f"{deployment.post_deploy_tests.capitalize()}Tests",
            project=projects.post_deploy_tests,
            inputs=[SOURCE_ARTIFACT, outputs_artifact],
            environment={"STAGE": deployment.name, "TEST_SUITE": deployment.post_deploy_tests},
            run_order=2,
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
                run_order=3,
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
            # VariableCheck rules may skip (variable_condition). docs/pipeline.md "Deployment window".
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


def variable_condition(name: str, variable: str) -> CodepipelineStageBeforeEntry:
    """Enter the stage when `variable` is "true"; skip it otherwise (only VariableCheck and LambdaInvoke
    rules may skip a stage)."""
    return CodepipelineStageBeforeEntry(
        condition=CodepipelineStageBeforeEntryCondition(
            result="SKIP",
            rule=[
                CodepipelineStageBeforeEntryConditionRule(
                    name=name,
                    rule_type_id=CodepipelineStageBeforeEntryConditionRuleRuleTypeId(
                        category="Rule", owner="AWS", provider="VariableCheck", version="1"
                    ),
                    configuration={"Variable": f"#{{{variable}}}", "Value": "true", "Operator": "EQ"},
                )
            ],
        )
    )
