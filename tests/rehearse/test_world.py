"""The rehearsal's world: role keys handed to builds are never stale (a rehearsal runs over an hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tools.rehearse import world as world_module
from tools.rehearse.world import REISSUE_BEFORE, World

ROLE = "arn:aws:iam::123456789012:role/canvalo/canvalo-beta-pipeline-build"


@pytest.mark.req("R4.1")
def test_cached_keys_near_their_expiry_are_issued_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    """CodeBuild's container credentials are refreshed by botocore when expired; handing the same expired keys
    again fails every later build ("refreshed credentials are still expired"), as the 73-minute run showed."""
    issued: list[datetime] = []

    def issue(self: World, role_arn: str, session_name: str) -> dict[str, str]:
        expiration = datetime.now(UTC) + (timedelta(minutes=5) if not issued else timedelta(hours=1))
        issued.append(expiration)
        return {
            "AccessKeyId": f"k{len(issued)}",
            "SecretAccessKey": "s",
            "SessionToken": "t",
            "Expiration": expiration.isoformat(),
        }

    monkeypatch.setattr(World, "_issue", issue)
    monkeypatch.setattr(world_module, "_CREDENTIALS", {})
    world = World(endpoint="http://127.0.0.1:1", region="eu-west-1", accounts={})
    first = world.role_credentials(ROLE, "codebuild")
    assert timedelta(minutes=5) < REISSUE_BEFORE, "the first keys expire within the reissue margin"
    second = world.role_credentials(ROLE, "codebuild")
    third = world.role_credentials(ROLE, "codebuild")
    assert (first["AccessKeyId"], second["AccessKeyId"], third["AccessKeyId"]) == ("k1", "k2", "k2")
