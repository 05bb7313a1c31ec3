"""`python -m pipelines.preflight` against moto (in-process) and a small synthesized cdktf.out; no network."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from names import BOOTSTRAP_VERSION, bootstrap_version_parameter
from pipelines.preflight import DelegationUncheckedError, Image, load_stage, main, parent_name_servers
from tests.infra import conftest as infra

REGION: Final = "eu-west-1"
PIPELINE_ACCOUNT: Final = "111111111111"
ACCOUNTS: Final = {"beta": PIPELINE_ACCOUNT, "gamma": "222222222222", "prod": "333333333333"}
PIPELINE_ROLE: Final = f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/canvalo/canvalo-pipeline-deploy"
REPOSITORY: Final = "canvalo-backend"
TAG: Final = "3f2a9c1"
ZONE: Final = "canvalo.example.com"
SENTINEL: Final = "sentinel-7c1e-never-print-me"
KEYS: Final = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY")
GOOD_SECRET: Final = json.dumps(dict.fromkeys(KEYS, SENTINEL))
PUT_SECRET: Final = (
    "aws secretsmanager put-secret-value --secret-id canvalo/{stage}/backend --secret-string "
    """'{{"SUPABASE_URL":"...","SUPABASE_SERVICE_KEY":"...","SUPABASE_PUB_KEY":"..."}}' (README: Secrets)"""
)
BOOTSTRAP_FIX: Final = "an administrator must bootstrap the stage (README: Bootstrap an account)"


def deploy_role(stage: str) -> str | None:
    return None if stage == "beta" else f"arn:aws:iam::{ACCOUNTS[stage]}:role/canvalo/canvalo-deploy"


def state_bucket(stage: str) -> str:
    return f"canvalo-tfstate-{ACCOUNTS[stage]}-{REGION}"


def synthesize(out: Path, stage: str, *, stack_creates_secret: bool = False, tag: str = TAG) -> Path:
    """The fields preflight reads, laid out as `make synth` writes them: the stage's one stack, `<stage>`, and
    its bootstrap stack, which preflight leaves alone (it keeps its state elsewhere)."""
    role = deploy_role(stage)
    backend: dict[str, Any] = {
        "allowed_account_ids": [ACCOUNTS[stage]],
        "bucket": state_bucket(stage),
        "dynamodb_table": "canvalo-tfstate-lock",
        "key": f"{stage}/terraform.tfstate",
        "region": REGION,
    }
    provider: dict[str, Any] = {"default_tags": [{"tags": {"application": "canvalo", "stage": stage}}]}
    if role:
        backend["assume_role"] = {"role_arn": role, "session_name": f"terraform-state-{stage}"}
        provider["assume_role"] = [{"role_arn": role, "session_name": f"terraform-{stage}"}]
    separator = "@" if tag.startswith("sha256:") else ":"
    image = f"{PIPELINE_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}{separator}{tag}"
    containers = json.dumps([{"name": "app", "image": image}])
    stage_stack: dict[str, Any] = {
        "terraform": {"backend": {"s3": backend}},
        "provider": {"aws": [provider]},
        "data": {},
        "resource": {"aws_ecs_task_definition": {"task": {"container_definitions": containers}}},
    }
    secret_type = "aws_secretsmanager_secret"
    stage_stack["resource" if stack_creates_secret else "data"][secret_type] = {
        "secret": {"name": f"canvalo/{stage}/backend"}
    }
    if stage == "prod":
        stage_stack["data"]["aws_route53_zone"] = {"zone": {"name": ZONE, "private_zone": False}}
    # Another bucket: were it read, every check of the stage would look in the wrong place.
    bootstrap_stack = {
        "terraform": {"backend": {"local": {"path": "terraform.tfstate"}}},
        "provider": {"aws": [provider]},
        "resource": {"aws_s3_bucket": {"state": {"bucket": "not-the-state-bucket"}}},
    }
    for name, document in ((stage, stage_stack), (f"bootstrap-{stage}", bootstrap_stack)):
        (out / "stacks" / name).mkdir(parents=True, exist_ok=True)
        (out / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    return out


def session_of(caller: boto3.session.Session, role_arn: str) -> boto3.session.Session:
    credentials = caller.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="test")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


@dataclass
class Aws:
    """moto's accounts: `caller` is the pipeline account's deploy role, as in CodeBuild."""

    caller: boto3.session.Session

    def account(self, stage: str) -> boto3.session.Session:
        role = deploy_role(stage)
        return session_of(self.caller, role) if role else self.caller

    def bootstrap(self, stage: str, *, version: int | None = BOOTSTRAP_VERSION, table: bool = True) -> None:
        session = self.account(stage)
        session.client("s3").create_bucket(
            Bucket=state_bucket(stage), CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        if table:
            session.client("dynamodb").create_table(
                TableName="canvalo-tfstate-lock",
                KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        if version is not None:
            parameter = bootstrap_version_parameter("canvalo", stage)
            session.client("ssm").put_parameter(Name=parameter, Value=str(version), Type="String")

    def create_secret(self, stage: str, value: str | None = GOOD_SECRET) -> None:
        secrets = self.account(stage).client("secretsmanager")
        if value is None:
            secrets.create_secret(Name=f"canvalo/{stage}/backend")
        else:
            secrets.create_secret(Name=f"canvalo/{stage}/backend", SecretString=value)

    def create_zone(self, stage: str) -> list[str]:
        zone = self.account(stage).client("route53").create_hosted_zone(Name=ZONE, CallerReference=ZONE)
        return list(zone["DelegationSet"]["NameServers"])

    def push(self, tag: str = TAG) -> None:
        ecr = self.caller.client("ecr")
        if not ecr.describe_repositories()["repositories"]:
            ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:0"},
            "layers": [],
        }
        ecr.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(manifest), imageTag=tag)

    def ready(self, stage: str) -> list[str]:
        """Everything preflight wants; the zone's name servers (prod) or []."""
        self.bootstrap(stage)
        self.create_secret(stage)
        self.push()
        return self.create_zone(stage) if stage == "prod" else []


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        yield Aws(session_of(boto3.session.Session(region_name=REGION), PIPELINE_ROLE))


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    errors: list[str]
    notes: list[str]


def preflight(
    aws: Aws,
    capsys: pytest.CaptureFixture[str],
    cdktf_out: Path,
    stage: str,
    *extra: str,
    delegation: Sequence[str] = (),
) -> Outcome:
    def parent_says(domain: str) -> Sequence[str]:
        assert domain == ZONE
        return delegation

    argv = ["--stage", stage, "--cdktf-out", str(cdktf_out), *extra]
    status = main(argv, session=aws.caller, lookup=parent_says)
    out, err = capsys.readouterr()
    assert SENTINEL not in out + err, "a secret value was printed"
    lines = err.splitlines()
    notes = [line.removeprefix("note: ") for line in lines if line.startswith("note: ")]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    assert len(notes) + len(errors) == len(lines), f"every line on stderr is a note or an error: {err}"
    return Outcome(status, out, errors, notes)


def only_error(outcome: Outcome) -> str:
    assert (outcome.status, len(outcome.errors)) == (1, 1), outcome
    return outcome.errors[0]


def refuse(session: boto3.session.Session, service: str, operation: str, code: str) -> None:
    """`operation` fails as AWS answers a caller without the permission (moto cannot enforce it in-process)."""

    def deny(params: dict[str, Any], **_: object) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "denied"}}, operation)

    session.events.register(f"before-parameter-build.{service}.{operation}", deny)


# -- all good --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        pytest.param("gamma", marks=pytest.mark.req("R4.6")),  # through gamma's deploy role
        pytest.param("beta", marks=pytest.mark.req("R4.8")),  # with the pipeline account's own credentials
    ],
)
def test_a_ready_stage_passes_every_check(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: str
) -> None:
    aws.ready(stage)
    outcome = preflight(aws, capsys, synthesize(tmp_path, stage), stage)
    assert outcome == Outcome(0, f"preflight {stage}: ok (5 checks)\n", [], [])


@pytest.mark.req("R8.7")
def test_prod_passes_when_its_zone_exists_and_the_parent_delegates_to_it(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name_servers = aws.ready("prod")
    # The parent answers with trailing dots and in another order: the same delegation.
    delegation = [f"{server.upper()}." for server in reversed(name_servers)]
    outcome = preflight(aws, capsys, synthesize(tmp_path, "prod"), "prod", delegation=delegation)
    assert outcome == Outcome(0, "preflight prod: ok (6 checks)\n", [], [])


# -- credentials -----------------------------------------------------------------------------------


@pytest.mark.req("R4.6")
def test_the_stage_account_is_reached_through_its_deploy_role(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Bootstrapped in the pipeline account instead of gamma's: the role must take preflight to gamma's.
    aws.bootstrap("beta")
    aws.create_secret("beta")
    aws.push()
    caller_account = aws.caller.client("sts").get_caller_identity()["Account"]
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")
    assert caller_account == PIPELINE_ACCOUNT
    assert outcome.status == 1
    assert outcome.errors[0] == (
        f"state bucket {state_bucket('gamma')} does not exist in account 222222222222: {BOOTSTRAP_FIX}"
    )
    stage_identity = aws.account("gamma").client("sts").get_caller_identity()
    assert stage_identity["Arn"] == "arn:aws:sts::222222222222:assumed-role/canvalo-deploy/test"


PLAN_ROLE = "arn:aws:iam::222222222222:role/canvalo/canvalo-plan"


@pytest.mark.req("R4.6")
@pytest.mark.parametrize(
    ("extra", "role"),
    [((), "arn:aws:iam::222222222222:role/canvalo/canvalo-deploy"), (("--role-arn", PLAN_ROLE), PLAN_ROLE)],
    ids=["the role the stacks name", "the role the pipeline names"],
)
def test_the_stage_is_checked_as_one_role_in_a_session_named_after_the_stage(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], role: str
) -> None:
    aws.ready("gamma")
    assumed: list[tuple[str, str]] = []
    aws.caller.events.register(
        "before-parameter-build.sts.AssumeRole",
        lambda params, **_: assumed.append((params["RoleArn"], params["RoleSessionName"])),
    )
    assert preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma", *extra).status == 0
    assert assumed == [(role, "preflight-gamma")]


@pytest.mark.req("R4.6")
def test_a_role_that_cannot_be_assumed_is_one_line_and_the_image_is_still_checked(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refuse(aws.caller, "sts", "AssumeRole", "AccessDenied")
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")
    assert outcome.status == 1
    assert outcome.errors == [
        f"cannot assume arn:aws:iam::222222222222:role/canvalo/canvalo-deploy as "
        f"arn:aws:sts::{PIPELINE_ACCOUNT}:assumed-role/canvalo-pipeline-deploy/test (AccessDenied): run as a "
        "principal that role trusts (the pipeline's deploy role)",
        f"ECR repository {REPOSITORY} does not exist in account {PIPELINE_ACCOUNT}: deploy the pipeline stack",
    ]


@pytest.mark.req("R4.8")
def test_beta_with_credentials_of_another_account_stops_before_checking_it(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.ready("beta")
    aws.caller = aws.account("gamma")
    outcome = preflight(aws, capsys, synthesize(tmp_path, "beta"), "beta")
    assert outcome.status == 1
    # Nothing is checked in the wrong account; the image is the caller's to find (and it is not in gamma).
    assert outcome.errors == [
        "the credentials are for account 222222222222 (arn:aws:sts::222222222222:assumed-role/canvalo-deploy/test), "
        f"stage beta is in account {PIPELINE_ACCOUNT}: use credentials of account {PIPELINE_ACCOUNT}",
        f"ECR repository {REPOSITORY} does not exist in account {PIPELINE_ACCOUNT}: deploy the pipeline stack",
    ]


# -- bootstrap -------------------------------------------------------------------------------------


@pytest.mark.req("R4.6")
def test_a_stage_never_bootstrapped_names_the_bucket_the_table_and_the_bootstrap(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.create_secret("gamma")
    aws.push()
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")
    assert outcome.status == 1
    assert outcome.errors == [
        f"state bucket {state_bucket('gamma')} does not exist in account 222222222222: {BOOTSTRAP_FIX}",
        f"lock table canvalo-tfstate-lock does not exist in account 222222222222: {BOOTSTRAP_FIX}",
        "bootstrap-gamma was never applied (no SSM parameter /canvalo/gamma/bootstrap-version), the code needs "
        f"{BOOTSTRAP_VERSION}: an administrator must apply bootstrap-gamma",
    ]


@pytest.mark.req("R4.6")
def test_a_missing_lock_table_alone_fails(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.bootstrap("gamma", table=False)
    aws.create_secret("gamma")
    aws.push()
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")) == (
        f"lock table canvalo-tfstate-lock does not exist in account 222222222222: {BOOTSTRAP_FIX}"
    )


@pytest.mark.req("R4.6")
def test_an_outdated_bootstrap_names_both_versions(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.bootstrap("gamma", version=BOOTSTRAP_VERSION - 1)
    aws.create_secret("gamma")
    aws.push()
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")) == (
        f"bootstrap-gamma is at version {BOOTSTRAP_VERSION - 1}, the code needs {BOOTSTRAP_VERSION}: "
        "an administrator must apply bootstrap-gamma"
    )


# -- hosted zone -----------------------------------------------------------------------------------


@pytest.mark.req("R8.7")
def test_a_missing_prod_zone_says_to_create_it(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.bootstrap("prod")
    aws.create_secret("prod")
    aws.push()
    outcome = preflight(aws, capsys, synthesize(tmp_path, "prod"), "prod")
    assert outcome.errors == [
        f"public hosted zone {ZONE} does not exist in account 333333333333: an administrator must apply "
        "bootstrap-prod, which creates it, and delegate the domain to it (README: Bootstrap an account)"
    ]


@pytest.mark.req("R8.7")
def test_a_zone_the_parent_delegates_elsewhere_names_the_name_servers_to_set(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name_servers = sorted(aws.ready("prod"))
    stale = ["ns-1.awsdns-00.com.", "ns-2.awsdns-01.net."]
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "prod"), "prod", delegation=stale)) == (
        f"{ZONE} is delegated to ns-1.awsdns-00.com, ns-2.awsdns-01.net, not to its hosted zone in account "
        f"333333333333: make {', '.join(name_servers)} its NS records at the registrar or parent zone "
        "(README: Bootstrap an account)"
    )


@pytest.mark.req("R8.7")
def test_an_undelegated_zone_fails(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.ready("prod")
    outcome = preflight(aws, capsys, synthesize(tmp_path, "prod"), "prod", delegation=[])
    assert outcome.status == 1
    assert outcome.errors[0].startswith(f"{ZONE} is not delegated (the parent has no NS records for it), not to")


@pytest.mark.req("R8.7")
def test_without_dnspython_the_delegation_is_a_note_not_a_failure(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.ready("prod")
    # Whether or not dnspython is installed, this test never looks anything up.
    monkeypatch.setitem(sys.modules, "dns.message", None)
    with pytest.raises(DelegationUncheckedError, match=r"^dnspython not installed$"):
        parent_name_servers(ZONE)
    status = main(["--stage", "prod", "--cdktf-out", str(synthesize(tmp_path, "prod"))], session=aws.caller)
    out, err = capsys.readouterr()
    assert (status, out) == (0, "preflight prod: ok (6 checks)\n")
    assert err == f"note: delegation of {ZONE} not checked: dnspython not installed\n"


# -- secret ----------------------------------------------------------------------------------------


@pytest.mark.req("R7.5")
def test_a_secret_the_stack_reads_but_nobody_created_fails(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.bootstrap("gamma")
    aws.push()
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")
    assert outcome.errors == [
        "secret canvalo/gamma/backend does not exist in account 222222222222: an administrator must apply "
        "bootstrap-gamma, which creates it, then set its value (README: Bootstrap an account)"
    ]


@pytest.mark.req("R7.5")
def test_a_secret_the_stack_creates_may_not_exist_yet(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.bootstrap("gamma")
    aws.push()
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma", stack_creates_secret=True), "gamma")
    assert (outcome.status, outcome.out, outcome.errors) == (0, "preflight gamma: ok (5 checks)\n", [])
    assert outcome.notes == [
        "secret canvalo/gamma/backend does not exist yet: gamma creates it, then set it: "
        + PUT_SECRET.format(stage="gamma")
    ]


@pytest.mark.req("R5.1", "R7.5", "R9.4")
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "has no value"),
        (json.dumps({"SUPABASE_URL": SENTINEL, "SUPABASE_PUB_KEY": SENTINEL}), "lacks SUPABASE_SERVICE_KEY"),
        (json.dumps({**dict.fromkeys(KEYS, SENTINEL), "SUPABASE_PUB_KEY": ""}), "lacks SUPABASE_PUB_KEY"),
        (f"SUPABASE_URL={SENTINEL}", "is not a JSON object"),
        (json.dumps([SENTINEL]), "is not a JSON object"),
    ],
)
def test_a_secret_without_a_value_or_a_key_names_the_command_that_sets_it_and_never_prints_it(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str | None, problem: str
) -> None:
    aws.bootstrap("gamma")
    aws.create_secret("gamma", value=value)
    aws.push()
    # `preflight` asserts that SENTINEL, in every value above, is on neither stdout nor stderr.
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma")) == (
        f"secret canvalo/gamma/backend {problem}: {PUT_SECRET.format(stage='gamma')}"
    )


@pytest.mark.req("R5.3")
def test_a_role_that_may_not_read_the_secret_gets_a_note_not_a_failure(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.ready("beta")
    refuse(aws.caller, "secrets-manager", "GetSecretValue", "AccessDeniedException")
    outcome = preflight(aws, capsys, synthesize(tmp_path, "beta"), "beta")
    assert (outcome.status, outcome.out) == (0, "preflight beta: ok (5 checks)\n")
    assert outcome.notes == ["secret canvalo/beta/backend: keys not checked: this role may not read the secret"]


@pytest.mark.req("R4.6")
def test_a_check_the_role_may_not_make_names_the_permission(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.ready("beta")
    refuse(aws.caller, "secrets-manager", "DescribeSecret", "AccessDeniedException")
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "beta"), "beta")) == (
        "could not check secret canvalo/beta/backend: DescribeSecret failed with AccessDeniedException "
        "(needs secretsmanager:DescribeSecret)"
    )


# -- image -----------------------------------------------------------------------------------------


@pytest.mark.req("R4.7")
def test_an_image_not_pushed_names_the_build(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.ready("gamma")
    assert only_error(preflight(aws, capsys, synthesize(tmp_path, "gamma", tag="0badc0de"), "gamma")) == (
        f"image {REPOSITORY}:0badc0de is not in ECR: the pipeline's Build pushes it (or `make image` and push)"
    )


@pytest.mark.req("R4.7")
def test_image_tag_replaces_the_synthesized_tag(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.ready("gamma")
    cdktf_out = synthesize(tmp_path, "gamma", tag="0badc0de")
    assert preflight(aws, capsys, cdktf_out, "gamma", "--image-tag", TAG).status == 0
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma"), "gamma", "--image-tag", "later")
    assert outcome.errors == [
        f"image {REPOSITORY}:later is not in ECR: the pipeline's Build pushes it (or `make image` and push)"
    ]


@pytest.mark.req("R4.2")
def test_the_pipeline_plans_only_stacks_that_run_the_digest_build_pushed(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.ready("gamma")
    ecr = aws.caller.client("ecr")
    digest = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageTag": TAG}])["imageDetails"][0]
    pushed = str(digest["imageDigest"])
    by_digest = synthesize(tmp_path / "by-digest", "gamma", tag=pushed)
    assert preflight(aws, capsys, by_digest, "gamma", "--expect-image-digest", pushed).status == 0
    # An artifact rewritten to run another image, or the same image by its tag: refused before any check.
    other = "sha256:" + "0" * 64
    for cdktf_out, runs in (
        (by_digest, f"{REPOSITORY}@{pushed}"),
        (synthesize(tmp_path / "by-tag", "gamma"), f"{REPOSITORY}:{TAG}"),
    ):
        expected = other if cdktf_out == by_digest else pushed
        assert only_error(preflight(aws, capsys, cdktf_out, "gamma", "--expect-image-digest", expected)) == (
            f"the gamma stacks run {runs}, not the image Build pushed ({expected}): release the commit again so that "
            "Build synthesizes its own image's digest"
        )


@pytest.mark.req("R4.7")
def test_the_unreleased_tag_is_never_pushed(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aws.ready("gamma")
    aws.push("unreleased")
    outcome = preflight(aws, capsys, synthesize(tmp_path, "gamma", tag="unreleased"), "gamma")
    assert outcome.errors == [
        f"image {REPOSITORY}:unreleased is never pushed: set CANVALO_IMAGE_TAG to a pushed tag (then `make synth`) "
        "or pass --image-tag"
    ]


# -- input -----------------------------------------------------------------------------------------


@pytest.mark.req("R6.3")
def test_bad_input_is_one_line_and_exit_status_2(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stage", "gamma", "--cdktf-out", str(tmp_path / "nowhere")], session=aws.caller) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'nowhere' / 'stacks'} does not exist: synthesize first with `make synth`\n"
    )
    synthesize(tmp_path, "beta")
    synthesize(tmp_path, "prod")
    assert main(["--stage", "qa", "--cdktf-out", str(tmp_path)], session=aws.caller) == 2
    assert (
        capsys.readouterr().err
        == f"error: no stack 'qa' in {tmp_path / 'stacks'}: the synthesized stages are beta, prod\n"
    )
    stage_stack = tmp_path / "stacks" / "beta" / "cdk.tf.json"
    document = json.loads(stage_stack.read_text())
    del document["terraform"]["backend"]["s3"]["bucket"]
    stage_stack.write_text(json.dumps(document))
    assert main(["--stage", "beta", "--cdktf-out", str(tmp_path)], session=aws.caller) == 2
    assert capsys.readouterr().err == (
        "error: the synthesized stack 'beta' lacks what preflight reads (KeyError: 'bucket'): synthesize again "
        "with `make synth`\n"
    )


# The session's synthesis of the fixture configuration, shared with tests/infra (one synth per run).
synthesized = infra.synth_outdir


@pytest.mark.req("R6.3")
def test_preflight_reads_what_make_synth_writes(synthesized: Path) -> None:
    """The fields read above from a small cdktf.out are where the real synthesis puts them."""
    for stage, role in (("beta", None), ("prod", "arn:aws:iam::333333333333:role/canvalo/canvalo-deploy")):
        read = load_stage(synthesized, stage)
        assert (read.app_name, read.role_arn, read.account_id) == ("canvalo", role, ACCOUNTS[stage])
        assert (read.state_bucket, read.lock_table) == (state_bucket(stage), "canvalo-tfstate-lock")
        assert [secret.name for secret in read.secrets] == [f"canvalo/{stage}/backend"]
        assert read.images == (Image(PIPELINE_ACCOUNT, REGION, REPOSITORY, "unreleased"),)
        assert read.zones == ((ZONE,) if stage == "prod" else ())
