"""The rehearsal's AWS: one moto_server on 127.0.0.1, one set of credentials per account.

moto links credentials to an account by how they were made: keys that `sts:AssumeRole` returned for
`arn:aws:iam::<account>:role/<name>` act in <account>. The rehearsal plays AWS itself (the fake
Terraform's checks, CodeBuild's role credentials) with such keys for a role that no policy names,
`AWS_SIDE_ROLE`, so what it does on AWS's behalf never passes for a principal of the project.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

# What AWS itself does in an account (create what an admin created, read what IAM would read).
AWS_SIDE_ROLE = "rehearsal-aws-side"
# The base keys moto maps to its default account; only ever used to call sts:AssumeRole.
BASE_CREDENTIALS = {"aws_access_key_id": "rehearsal", "aws_secret_access_key": "rehearsal"}
WORLD_FILE_VARIABLE = "CANVALO_REHEARSAL_WORLD"
# Per process: issued credentials and clients (a client costs tens of milliseconds to make).
_CREDENTIALS: dict[tuple[str, str, str], dict[str, str]] = {}
# How long cached role keys must still be valid to be handed out again: longer than any one build.
REISSUE_BEFORE = timedelta(minutes=20)
_CLIENTS: dict[tuple[str, str, str, str], Any] = {}


@dataclass(frozen=True)
class StateLocation:
    account: str
    bucket: str
    key: str


@dataclass(frozen=True)
class World:
    """Where the rehearsal's AWS is, and the accounts in it (stage name -> account id)."""

    endpoint: str
    region: str
    accounts: dict[str, str] = field(default_factory=dict)
    # Where each stack keeps its state (account, bucket, key), as the synthesized backends say.
    states: dict[str, StateLocation] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> World:
        raw = json.loads(path.read_text())
        states = {name: StateLocation(**where) for name, where in raw.get("states", {}).items()}
        return cls(endpoint=raw["endpoint"], region=raw["region"], accounts=dict(raw["accounts"]), states=states)

    def save(self, path: Path) -> None:
        states = {name: vars(where) for name, where in self.states.items()}
        path.write_text(
            json.dumps({"endpoint": self.endpoint, "region": self.region, "accounts": self.accounts, "states": states})
        )

    def learn_states(self, cdktf_out: Path) -> None:
        """Read each stack's S3 backend from a synthesized cdktf.out, so no location is typed twice."""
        for path in sorted(cdktf_out.glob("stacks/*/cdk.tf.json")):
            backend = (json.loads(path.read_text()).get("terraform") or {}).get("backend") or {}
            s3 = backend.get("s3")
            if s3:
                self.states[path.parent.name] = StateLocation(s3["allowed_account_ids"][0], s3["bucket"], s3["key"])

    def read_state(self, stack: str) -> dict[str, Any]:
        where = self.states[stack]
        body = self.client(where.account, "s3").get_object(Bucket=where.bucket, Key=where.key)["Body"].read()
        state: dict[str, Any] = json.loads(body)
        return state

    def session_for(self, credentials: dict[str, str], region: str | None = None) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=region or self.region,
        )

    def role_credentials(self, role_arn: str, session_name: str = "rehearsal") -> dict[str, str]:
        """Keys that act as `role_arn` in its account; nothing is checked: callers check trust first.

        Kept while they have REISSUE_BEFORE left (moto's keys last an hour, like STS's default): a rehearsal
        runs longer than an hour, and a CodeBuild build handed expired keys fails in botocore ("refreshed
        credentials are still expired"), so older keys are issued anew."""
        key = (self.endpoint, role_arn, session_name)
        cached = _CREDENTIALS.get(key)
        if cached is None or datetime.fromisoformat(cached["Expiration"]) - datetime.now(UTC) < REISSUE_BEFORE:
            _CREDENTIALS[key] = self._issue(role_arn, session_name)
        return _CREDENTIALS[key]

    def _issue(self, role_arn: str, session_name: str) -> dict[str, str]:
        sts = boto3.session.Session(
            aws_access_key_id=BASE_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=BASE_CREDENTIALS["aws_secret_access_key"],
            region_name=self.region,
        ).client("sts", endpoint_url=self.endpoint)
        issued = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
        return {
            "AccessKeyId": issued["AccessKeyId"],
            "SecretAccessKey": issued["SecretAccessKey"],
            "SessionToken": issued["SessionToken"],
            "Expiration": issued["Expiration"].isoformat(),
        }

    def aws_side(self, account: str, region: str | None = None) -> boto3.session.Session:
        """A session acting as AWS itself inside `account`."""
        return self.session_for(self.role_credentials(f"arn:aws:iam::{account}:role/{AWS_SIDE_ROLE}"), region)

    def client(self, account: str, service: str, region: str | None = None) -> Any:
        key = (self.endpoint, account, service, region or self.region)
        if key not in _CLIENTS:
            session = self.aws_side(account, region)
            _CLIENTS[key] = session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]
        return _CLIENTS[key]

    def owner_of_bucket(self, bucket: str, likely: str | None = None) -> str | None:
        """The account whose bucket it is; `likely` is asked first (usually the caller's own)."""
        accounts = [a for a in (likely, *self.accounts.values()) if a]
        for account in dict.fromkeys(accounts):
            names = [b["Name"] for b in self.client(account, "s3").list_buckets().get("Buckets", [])]
            if bucket in names:
                return account
        return None


REPOSITORY = Path(__file__).resolve().parents[2]


def tool_command(module: str, world_file: Path, **variables: str) -> str:
    """A shell command running one of the rehearsal's modules, AWS's side of a build: `-P` keeps the build's
    own working directory (a copy of some commit, maybe without the rehearsal) off the import path."""
    settings = {WORLD_FILE_VARIABLE: str(world_file), "PYTHONPATH": str(REPOSITORY), **variables}
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items())
    return f"{assignments} {shlex.quote(sys.executable)} -P -m {module}"


def launcher(module: str, world_file: Path, *arguments: str, **variables: str) -> str:
    """An executable script that runs `module` with the script's own arguments."""
    return f'#!/bin/sh\nexec env {tool_command(module, world_file, **variables)} {" ".join(arguments)} "$@"\n'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MotoServer:
    """moto_server on 127.0.0.1 for the length of a `with` block."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        moto_server = Path(sys.executable).parent / "moto_server"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                # ECS services report as many running tasks as this, at most: every rollout completes.
                env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "MOTO_ECS_SERVICE_RUNNING": "100"},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{self.port} within 30 s: see {self.log}")

    def __exit__(self, *_: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
