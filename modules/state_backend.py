"""Where a stage account keeps its Terraform state: an S3 bucket and a DynamoDB lock table."""

from __future__ import annotations

from cdktn import TerraformResourceLifecycle
from cdktn_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
)
from constructs import Construct

from modules.private_bucket import PrivateBucket


class StateBackend(Construct):
    """State bucket and lock table; both always protected: losing state orphans every resource."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, lock_table_name: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = PrivateBucket(
            self,
            "state-bucket",
            bucket_name=bucket_name,
            protected=True,
            # Old state versions are the way back from a bad apply; keep a year of them.
            noncurrent_expire_after_days=365,
        ).bucket
        self.lock_table = DynamodbTable(
            self,
            "lock-table",
            name=lock_table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key="LockID",
            attribute=[DynamodbTableAttribute(name="LockID", type="S")],
            point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
            server_side_encryption=DynamodbTableServerSideEncryption(enabled=True),
            deletion_protection_enabled=True,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True),
        )
