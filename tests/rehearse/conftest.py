"""One moto_server per module for the rehearsal's fake terraform, and a helper that runs the fake in-process.

Each test gets accounts of its own (fresh twelve-digit ids on the shared server) and its own working
directories, so what one test creates cannot make another pass or fail.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.rehearse import terraform
from tools.rehearse.world import WORLD_FILE_VARIABLE, MotoServer, World

REGION = "eu-west-1"
_ACCOUNT_NUMBERS = itertools.count(100000000001)
# Never real AWS: fake keys, no instance metadata lookups (the server and every run of the fake).
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class Result:
    """What one run of the fake printed, and its exit status."""

    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server on 127.0.0.1 for the whole module (starting one takes seconds), with fake credentials."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in FAKE_ENVIRONMENT.items():
            patch.setenv(variable, value)
        with MotoServer(tmp_path_factory.mktemp("moto") / "moto_server.log") as server:
            yield server.endpoint


class Rehearsal:
    """A world of fresh accounts on the module's moto, stacks in a temporary directory, and the fake to run."""

    def __init__(self, endpoint: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = directory
        self.monkeypatch = monkeypatch
        self.world = World(endpoint=endpoint, region=REGION, accounts={})
        self.world_file = directory / "world.json"
        self.save()

    def account(self, stage: str) -> str:
        """A new account, known to the world as `stage` (the fake looks for bucket owners among these)."""
        number = str(next(_ACCOUNT_NUMBERS))
        self.world.accounts[stage] = number
        self.save()
        return number

    def save(self) -> None:
        self.world.save(self.world_file)

    def client(self, account: str, service: str) -> Any:
        """A client acting as AWS itself (an administrator) inside `account`."""
        return self.world.client(account, service)

    def bucket(self, account: str) -> str:
        """A new state bucket owned by `account`."""
        name = f"state-{uuid.uuid4().hex[:16]}"
        self.client(account, "s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    def role(self, account: str, name: str, trust: dict[str, Any], path: str = "/") -> str:
        """An IAM role created in `account` (as an administrator would); its ARN, path included."""
        created = self.client(account, "iam").create_role(
            RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust)
        )
        return str(created["Role"]["Arn"])

    def stack(self, name: str, config: dict[str, Any]) -> Path:
        """(Re)write `<name>/cdk.tf.json`; the directory's name is the stack's name."""
        directory = self.directory / name
        directory.mkdir(exist_ok=True)
        (directory / "cdk.tf.json").write_text(json.dumps(config, indent=1))
        return directory

    def run(self, stack: Path, *args: str, caller: str) -> Result:
        """`terraform <args>` in `stack`, with the credentials of role ARN `caller`, as the pipeline runs it."""
        credentials = self.world.role_credentials(caller)
        with self.monkeypatch.context() as patch:
            patch.chdir(stack)
            environment = {
                **FAKE_ENVIRONMENT,
                WORLD_FILE_VARIABLE: str(self.world_file),
                "AWS_ENDPOINT_URL": self.world.endpoint,
                "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": credentials["SessionToken"],
            }
            for variable, value in environment.items():
                patch.setenv(variable, value)
            patch.delenv("AWS_PROFILE", raising=False)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = terraform.main(list(args))
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def rehearsal(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rehearsal:
    return Rehearsal(moto_endpoint, tmp_path, monkeypatch)
