"""The ECR repository the pipeline pushes the backend image to, and that every stage pulls from."""

from __future__ import annotations

import json
from collections.abc import Mapping

from cdktn import TerraformResourceLifecycle
from cdktn_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktn_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from cdktn_provider_aws.ecr_repository_policy import EcrRepositoryPolicy
from constructs import Construct

from modules.iam import policy_document, statement

PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
# What would take away or change an image a stage runs: deleting it (or the repository, which `force` lets
# delete with its images), letting its tag move, expiring it by a new lifecycle, or rewriting this policy.
IMAGE_REMOVING_ACTIONS = (
    "ecr:BatchDeleteImage",
    "ecr:DeleteRepository",
    "ecr:PutImageTagMutability",
    "ecr:PutLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy",
    "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy",
)


# The fewest commits' images the lifecycle may keep: far more than a promotion ever lags behind.
MIN_KEPT_IMAGES = 100


class ContainerRegistry(Construct):
    """Immutable tags (a commit's image never changes), scan on push, and a lifecycle that bounds storage.

    Always protected (no `force_delete`, `prevent_destroy`), whatever the stage it lives in: every stage,
    prod included, pulls its images from here, so losing the repository stops prod's next task start.

    `pullers` maps a label (the stage) to another account allowed to pull and the role ARN pattern there
    that may (its ECS task execution roles): the account is the principal, the pattern a condition on
    the caller. The repository's own account pulls through its roles' IAM policies.
    Images use AES256: an image holds no secret value, and a customer-managed key would have to be
    shared with every pulling account.

    `automation_roles` (an ArnLike pattern: the project's roles, the pipeline's among them) may never remove or
    change an image (IMAGE_REMOVING_ACTIONS), whatever their own policies say: the repository policy denies
    it, and an explicit Deny in a resource policy holds for the account's own principals too
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html). So the
    Build role cannot delete prod's image and push another, and the update role cannot expire it with a
    new lifecycle: a change of the lifecycle or this policy is an administrator's (pipelines/plan_summary.py).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        pullers: Mapping[str, tuple[str, str]],
        automation_roles: str,
        keep_images: int = 200,
    ) -> None:
        super().__init__(scope, construct_id)
        if keep_images < MIN_KEPT_IMAGES:
            # A raise, not an assert: cdktf.json runs the app with `python -O`.
            raise ValueError(f"keep_images={keep_images} could expire prod's image: keep at least {MIN_KEPT_IMAGES}")
        self.repository = EcrRepository(
            self,
            "repository",
            name=name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(encryption_type="AES256")],
            # Deleting the repository with its images takes an administrator removing both switches.
            force_delete=False,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True),
        )
        EcrLifecyclePolicy(
            self,
            "lifecycle",
            repository=self.repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            # Every image the pipeline pushes is tagged with its commit: an untagged one
                            # is a left-over of a failed push, never what a stage runs.
                            "description": "Untagged images are left-overs of failed pushes",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            # Only tagged images count, so untagged left-overs never push a commit out.
                            # Prod's running image stays because prod runs one of the newest commits:
                            # each execution carries one commit through beta, gamma and prod, so prod lags
                            # the newest build only by the commits built since its last release (queued,
                            # failed or not approved), far fewer than keep_images (>= MIN_KEPT_IMAGES).
                            "description": f"Keep the newest {keep_images} commits' images",
                            "selection": {
                                "tagStatus": "tagged",
                                "tagPatternList": ["*"],
                                "countType": "imageCountMoreThan",
                                "countNumber": keep_images,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
        )
        never_remove = statement(
            sid="NoAutomationRemovesAnImage",
            effect="Deny",
            actions=IMAGE_REMOVING_ACTIONS,
            # A repository policy names no resource: it applies to its own repository.
            resources=[],
            principals={"AWS": ["*"]},
            conditions=[("ArnLike", "aws:PrincipalArn", [automation_roles])],
        )
        pulls = [
            statement(
                sid=f"PullFrom{label.capitalize()}",
                actions=PULL_ACTIONS,
                resources=[],
                principals={"AWS": [f"arn:aws:iam::{account}:root"]},
                conditions=[("ArnLike", "aws:PrincipalArn", [role_pattern])],
            )
            for label, (account, role_pattern) in pullers.items()
        ]
        document = policy_document(self, "pull-policy", [*pulls, never_remove])
        EcrRepositoryPolicy(self, "policy", repository=self.repository.name, policy=document.json)
