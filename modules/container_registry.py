"""The ECR repository the pipeline pushes the backend image to, and that every stage pulls from."""

from __future__ import annotations

import json
from collections.abc import Mapping

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


class ContainerRegistry(Construct):
    """Immutable tags (a commit's image never changes), scan on push, and a lifecycle that bounds storage.

    `pullers` maps a label (the stage) to another account allowed to pull and the role ARN pattern there
    that may (its ECS task execution roles): the account is the principal, the pattern a condition on
    the caller. The repository's own account pulls through its roles' IAM policies.
    Images use AES256: an image holds no secret value, and a customer-managed key would have to be
    shared with every pulling account.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        pullers: Mapping[str, tuple[str, str]],
        keep_images: int = 200,
        protected: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.repository = EcrRepository(
            self,
            "repository",
            name=name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(encryption_type="AES256")],
            force_delete=not protected,
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
                            "description": "Untagged layers are left-overs of failed pushes",
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
                            # Far more commits than a promotion ever lags behind, so prod's image stays.
                            "description": f"Keep the newest {keep_images} commits' images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": keep_images,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
        )
        if pullers:
            pull = policy_document(
                self,
                "pull-policy",
                [
                    statement(
                        sid=f"PullFrom{label.capitalize()}",
                        actions=PULL_ACTIONS,
                        # A repository policy names no resource: it applies to its own repository.
                        resources=[],
                        principals={"AWS": [f"arn:aws:iam::{account}:root"]},
                        conditions=[("ArnLike", "aws:PrincipalArn", [role_pattern])],
                    )
                    for label, (account, role_pattern) in pullers.items()
                ],
            )
            EcrRepositoryPolicy(self, "policy", repository=self.repository.name, policy=pull.json)
