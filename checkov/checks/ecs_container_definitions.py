"""checkov checks over ECS container definitions as cdktn writes them: one JSON string.

checkov's own checks read `container_definitions` only as HCL-decoded objects. On .tf.json they get
the string: CKV_AWS_336 (read-only root) then passes whatever the string says, and CKV_AWS_334
(privileged) reports nothing, besides looking for a `privilege` key that ECS does not have. These
parse the string and judge the keys ECS reads. Loaded through `--external-checks-dir checkov/checks`.
"""

from __future__ import annotations

import json
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def containers_of(conf: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The container definitions of an aws_ecs_task_definition, or None when they cannot be read."""
    value: Any = conf.get("container_definitions")
    while isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
        value = value[0]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and all(isinstance(container, dict) for container in value):
        return value
    return None


class ContainerCheck(BaseResourceCheck):
    def __init__(self, *, check_id: str, name: str, key: str) -> None:
        self.key = key
        super().__init__(
            name=name,
            id=check_id,
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=("aws_ecs_task_definition",),
        )

    def container_passes(self, container: dict[str, Any]) -> bool:
        raise NotImplementedError

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        containers = containers_of(conf)
        if not containers:
            return CheckResult.UNKNOWN
        for index, container in enumerate(containers):
            if not self.container_passes(container):
                self.evaluated_keys = [f"container_definitions/[{index}]/{self.key}"]
                return CheckResult.FAILED
        return CheckResult.PASSED


class NoPrivilegedContainer(ContainerCheck):
    def __init__(self) -> None:
        super().__init__(check_id="CKV_CANVALO_1", name="ECS containers are not privileged", key="privileged")

    def container_passes(self, container: dict[str, Any]) -> bool:
        return container.get("privileged") is not True


class ReadOnlyRootFilesystem(ContainerCheck):
    def __init__(self) -> None:
        super().__init__(
            check_id="CKV_CANVALO_2",
            name="ECS containers run with a read-only root filesystem",
            key="readonlyRootFilesystem",
        )

    def container_passes(self, container: dict[str, Any]) -> bool:
        return container.get("readonlyRootFilesystem") is True


no_privileged_container = NoPrivilegedContainer()
read_only_root_filesystem = ReadOnlyRootFilesystem()
