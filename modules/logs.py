"""How long every CloudWatch log group of the project keeps its events: the same in every stage, not a setting."""

from __future__ import annotations

# R11.1 sets 30 days for the container logs; the VPC flow logs and the CodeBuild logs keep as long, so one
# incident's trail is complete across them (checkov's CKV_AWS_338, which asks for a year, is suppressed so).
LOG_RETENTION_DAYS = 30
