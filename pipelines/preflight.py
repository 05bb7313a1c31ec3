"""Before any plan: is the stage ready? Bootstrapped, its zone delegated, its secret set, its image pushed.

    python -m pipelines.preflight --stage gamma --cdktf-out cdktf.out [--image-tag TAG] [--expect-image-digest D]

Everything it checks comes from the synthesized `cdktf.out/stacks/<stage>/cdk.tf.json`, so a laptop and
the pipeline check the same thing:
1. the state bucket and the lock table of the S3 backend exist;
2. the SSM parameter `/<app>/<stage>/bootstrap-version` holds at least `BOOTSTRAP_VERSION`;
3. each public hosted zone the stacks look up exists, and the parent domain delegates it to that zone's
   name servers (through `NameServerLookup`: dnspython when installed, else a note);
4. each Secrets Manager secret the stacks read or create has a current value and, when this role may read
   it, that value is a JSON object holding the keys the backend needs. No secret value is ever printed;
5. the backend's image is in ECR (`--image-tag` replaces the synthesized tag; `unreleased` never exists), and,
   with `--expect-image-digest`, the stacks run that digest and nothing else: the pipeline passes the digest
   Build exported, which CodePipeline holds, so an artifact rewritten to run another image is refused.
Checks 1-4 run in the stage's account: as the role the stacks' S3 backend assumes (gamma, prod), assumed
from the caller's credentials with the session name `preflight-<stage>`, else as the caller (beta). Check 5
runs as the caller: the pipeline account holds the repository.

Every check runs. Then it prints `preflight <stage>: ok (N checks)`, or each failure as one `error:` line on
stderr naming what is missing and what fixes it, and exits 1. Notes (what it could not check) go to stderr
either way. Unreadable input (no cdktf.out, no such stage) is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from names import BOOTSTRAP_VERSION, UNRELEASED_IMAGE_TAG, bootstrap_version_parameter

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# The keys the backend refuses to start without (app/core/config.py REQUIRED_SECRET_KEYS, which a test keeps
# equal): the toolkit runs without the backend's packages, so it cannot import them from there.
REQUIRED_SECRET_KEYS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY")
CURRENT_STAGE = "AWSCURRENT"
BOOTSTRAP_README = "(README: Bootstrap an account)"
BOOTSTRAP_FIX = f"an administrator must bootstrap the stage {BOOTSTRAP_README}"
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException"}
P = ParamSpec("P")


class InputError(Exception):
    """The synthesized stacks cannot be read; the message is one line saying what and what to do."""


class DelegationUncheckedError(Exception):
    """The parent domain's name servers could not be looked up; the message says why."""


# The NS records the parent domain holds for a domain (its delegation), or DelegationUncheckedError.
NameServerLookup = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class Image:
    registry_id: str
    region: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, image: str) -> Image:
        """`<account>.dkr.ecr.<region>.amazonaws.com/<repository>(:<tag>|@sha256:<digest>)`."""
        host, _, reference = image.partition("/")
        account, _, rest = host.partition(".dkr.ecr.")
        repository, separator, tag = reference.partition("@") if "@" in reference else reference.rpartition(":")
        if not rest or not separator or not account.isdigit():
            raise InputError(f"the backend image {image} is not an ECR image: synthesize again with `make synth`")
        return cls(account, rest.split(".")[0], repository, tag)

    def __str__(self) -> str:
        return f"{self.repository}{'@' if self.tag.startswith('sha256:') else ':'}{self.tag}"

    def image_id(self) -> dict[str, str]:
        return {"imageDigest": self.tag} if self.tag.startswith("sha256:") else {"imageTag": self.tag}


@dataclass(frozen=True)
class Secret:
    name: str
    # The stack that creates it (a resource); None when the stacks only read it (a data source).
    created_by: str | None


@dataclass(frozen=True)
class Stage:
    """What preflight needs to know about a stage, as the synthesized stacks say it."""

    name: str
    app_name: str
    account_id: str
    region: str
    state_bucket: str
    lock_table: str | None
    role_arn: str | None
    secrets: tuple[Secret, ...]
    zones: tuple[str, ...]
    images: tuple[Image, ...]


@dataclass(frozen=True)
class Finding:
    text: str
    failed: bool = True


def note(text: str) -> Finding:
    return Finding(text, failed=False)


@dataclass
class Results:
    checks: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, findings: Sequence[Finding], *, counted: bool = True) -> None:
        self.checks += counted
        for finding in findings:
            (self.errors if finding.failed else self.notes).append(finding.text)


# -- what the synthesized stacks say ---------------------------------------------------------------


def read_stacks(cdktf_out: Path, stage: str) -> dict[str, dict[str, Any]]:
    stacks_dir = cdktf_out / "stacks"
    if not stacks_dir.is_dir():
        raise InputError(f"{stacks_dir} does not exist: synthesize first with `make synth`")
    files = sorted(stacks_dir.glob(f"{stage}/cdk.tf.json"))
    if not files:
        # Bootstrap stacks are `bootstrap-<stage>`; a stage's workload stack is its bare name.
        names = {p.parent.name for p in stacks_dir.glob("*/cdk.tf.json")}
        stages = sorted(name for name in names if "-" not in name and name != "pipeline")
        raise InputError(f"no stack {stage!r} in {stacks_dir}: the synthesized stages are {', '.join(stages)}")
    stacks = {}
    for file in files:
        try:
            stacks[file.parent.name] = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{file} is not JSON ({error.msg}): synthesize again with `make synth`") from None
    return stacks


def blocks(stacks: Mapping[str, Mapping[str, Any]], kind: str, type_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stack, block) for every `data`/`resource` block of a type in the stacks."""
    for stack, document in stacks.items():
        for block in (document.get(kind) or {}).get(type_name, {}).values():
            yield stack, block


def first(value: Any) -> Any:
    """Terraform JSON writes nested blocks as lists of one; cdktn writes some as objects."""
    return value[0] if isinstance(value, list) and value else value


def load_stage(cdktf_out: Path, stage: str) -> Stage:
    try:
        return read_stage(read_stacks(cdktf_out, stage), stage)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"the synthesized stack {stage!r} lacks what preflight reads ({type(error).__name__}: {error}): "
            "synthesize again with `make synth`"
        ) from None


def read_stage(stacks: Mapping[str, Mapping[str, Any]], stage: str) -> Stage:
    with_backend = [(name, d) for name, d in stacks.items() if "s3" in d.get("terraform", {}).get("backend", {})]
    if not with_backend:
        raise InputError(f"stack {stage!r} keeps no state in S3: synthesize again with `make synth`")
    stack, document = with_backend[0]
    backend = document["terraform"]["backend"]["s3"]
    provider = first(document.get("provider", {}).get("aws")) or {}
    app_name = (first(provider.get("default_tags")) or {}).get("tags", {}).get("application")
    if not app_name:
        raise InputError(f"{stack}'s AWS provider has no default tag `application`: synthesize again with `make synth`")
    role = backend.get("assume_role") or first(provider.get("assume_role")) or {}
    return Stage(
        name=stage,
        app_name=app_name,
        account_id=(backend.get("allowed_account_ids") or ["?"])[0],
        region=backend["region"],
        state_bucket=backend["bucket"],
        lock_table=backend.get("dynamodb_table"),
        role_arn=role.get("role_arn"),
        secrets=read_secrets(stacks),
        zones=tuple(
            sorted({z["name"] for _, z in blocks(stacks, "data", "aws_route53_zone") if not z.get("private_zone")})
        ),
        images=read_images(stacks),
    )


def read_secrets(stacks: Mapping[str, Mapping[str, Any]]) -> tuple[Secret, ...]:
    created = {block["name"]: stack for stack, block in blocks(stacks, "resource", "aws_secretsmanager_secret")}
    read = {block["name"] for _, block in blocks(stacks, "data", "aws_secretsmanager_secret") if "name" in block}
    return tuple(Secret(name, created.get(name)) for name in sorted(read | set(created)))


def read_images(stacks: Mapping[str, Mapping[str, Any]]) -> tuple[Image, ...]:
    images = set()
    for _, task in blocks(stacks, "resource", "aws_ecs_task_definition"):
        images |= {container["image"] for container in json.loads(task["container_definitions"])}
    return tuple(Image.parse(image) for image in sorted(images))


# -- credentials -----------------------------------------------------------------------------------


def assumed_session(caller: boto3.session.Session, role_arn: str, stage: Stage) -> boto3.session.Session:
    sts = caller.client("sts", region_name=stage.region)
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=f"preflight-{stage.name}")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=stage.region,
    )


def stage_session(caller: boto3.session.Session, caller_arn: str, stage: Stage) -> boto3.session.Session | Finding:
    """A session in the stage's account, or the one line saying why there is none: the caller when it is
    already there (the pipeline's Plan runs as the stage's plan role, `stage_credentials --role plan`), else
    the role the stacks' backend names (a laptop with the pipeline account's credentials)."""
    account = caller_arn.split(":")[4]
    if account == stage.account_id:
        return caller
    if stage.role_arn is None:
        if account != stage.account_id:
            return Finding(
                f"the credentials are for account {account} ({caller_arn}), stage {stage.name} is in account "
                f"{stage.account_id}: use credentials of account {stage.account_id}"
            )
        return caller
    try:
        return assumed_session(caller, stage.role_arn, stage)
    except ClientError as error:
        return Finding(
            f"cannot assume {stage.role_arn} as {caller_arn} ({error_code(error)}): run as a principal that role "
            "trusts (the pipeline's deploy role)"
        )


def caller_identity(caller: boto3.session.Session, region: str) -> str | Finding:
    try:
        return caller.client("sts", region_name=region).get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError) as error:
        return Finding(
            f"cannot tell who the caller is (sts:GetCallerIdentity: {error}): check the AWS credentials "
            "(AWS_PROFILE, or the build's role) and AWS_ENDPOINT_URL"
        )


# -- the checks ------------------------------------------------------------------------------------


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "?"))


def state_bucket_exists(session: boto3.session.Session, stage: Stage) -> list[Finding]:
    try:
        session.client("s3", region_name=stage.region).head_bucket(Bucket=stage.state_bucket)
    except ClientError as error:
        if error_code(error) in {"404", "NoSuchBucket"}:
            return [
                Finding(
                    f"state bucket {stage.state_bucket} does not exist in account {stage.account_id}: {BOOTSTRAP_FIX}"
                )
            ]
        raise
    return []


def lock_table_exists(session: boto3.session.Session, stage: Stage) -> list[Finding]:
    dynamodb: Any = session.client("dynamodb", region_name=stage.region)
    try:
        dynamodb.describe_table(TableName=stage.lock_table)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return [
                Finding(f"lock table {stage.lock_table} does not exist in account {stage.account_id}: {BOOTSTRAP_FIX}")
            ]
        raise
    return []


def bootstrap_is_current(session: boto3.session.Session, stage: Stage) -> list[Finding]:
    parameter = bootstrap_version_parameter(stage.app_name, stage.name)
    ssm: Any = session.client("ssm", region_name=stage.region)
    fix = f"the code needs {BOOTSTRAP_VERSION}: an administrator must apply bootstrap-{stage.name}"
    try:
        value = str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    except ClientError as error:
        if error_code(error) == "ParameterNotFound":
            return [Finding(f"bootstrap-{stage.name} was never applied (no SSM parameter {parameter}), {fix}")]
        raise
    if not value.strip().isdigit():
        return [Finding(f"bootstrap-{stage.name}'s version in {parameter} is not a number ({value[:20]!r}), {fix}")]
    if int(value) < BOOTSTRAP_VERSION:
        return [Finding(f"bootstrap-{stage.name} is at version {int(value)}, {fix}")]
    return []


def hosted_zone_name_servers(session: boto3.session.Session, zone: str) -> list[str] | None:
    """The name servers of the account's public hosted zone named `zone`, None when there is none."""
    route53: Any = session.client("route53")
    listed = route53.list_hosted_zones_by_name(DNSName=zone, MaxItems="10")["HostedZones"]
    public = [z for z in listed if z["Name"] == f"{zone}." and not z.get("Config", {}).get("PrivateZone")]
    if not public:
        return None
    return list(route53.get_hosted_zone(Id=public[0]["Id"])["DelegationSet"]["NameServers"])


def normalized(name_servers: Sequence[str]) -> list[str]:
    return sorted({server.lower().rstrip(".") for server in name_servers})


def zone_is_delegated(
    session: boto3.session.Session, stage: Stage, zone: str, lookup: NameServerLookup
) -> list[Finding]:
    name_servers = hosted_zone_name_servers(session, zone)
    if name_servers is None:
        return [
            Finding(
                f"public hosted zone {zone} does not exist in account {stage.account_id}: an administrator must "
                f"apply bootstrap-{stage.name}, which creates it, and delegate the domain to it {BOOTSTRAP_README}"
            )
        ]
    expected = normalized(name_servers)
    try:
        delegated = normalized(lookup(zone))
    except DelegationUncheckedError as reason:
        return [note(f"delegation of {zone} not checked: {reason}")]
    if delegated == expected:
        return []
    found = (
        f"delegated to {', '.join(delegated)}" if delegated else "not delegated (the parent has no NS records for it)"
    )
    return [
        Finding(
            f"{zone} is {found}, not to its hosted zone in account {stage.account_id}: make "
            f"{', '.join(expected)} its NS records at the registrar or parent zone {BOOTSTRAP_README}"
        )
    ]


def put_secret_command(name: str) -> str:
    value = ",".join(f'"{key}":"..."' for key in REQUIRED_SECRET_KEYS)
    return f"aws secretsmanager put-secret-value --secret-id {name} --secret-string '{{{value}}}' (README: Secrets)"


def secret_is_set(session: boto3.session.Session, stage: Stage, secret: Secret) -> list[Finding]:
    client: SecretsManagerClient = session.client("secretsmanager", region_name=stage.region)
    try:
        versions = client.describe_secret(SecretId=secret.name).get("VersionIdsToStages") or {}
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
        return [secret_missing(stage, secret)]
    if not any(CURRENT_STAGE in stages for stages in versions.values()):
        return [Finding(f"secret {secret.name} has no value: {put_secret_command(secret.name)}")]
    return secret_has_keys(client, secret.name)


def secret_missing(stage: Stage, secret: Secret) -> Finding:
    if secret.created_by:
        set_it = put_secret_command(secret.name)
        return note(f"secret {secret.name} does not exist yet: {secret.created_by} creates it, then set it: {set_it}")
    return Finding(
        f"secret {secret.name} does not exist in account {stage.account_id}: an administrator must apply "
        f"bootstrap-{stage.name}, which creates it, then set its value {BOOTSTRAP_README}"
    )


def secret_has_keys(client: SecretsManagerClient, name: str) -> list[Finding]:
    """Never puts the value, or any part of it, in a message."""
    try:
        text = client.get_secret_value(SecretId=name).get("SecretString")
    except ClientError as error:
        if error_code(error) in ACCESS_DENIED:
            return [note(f"secret {name}: keys not checked: this role may not read the secret")]
        raise
    try:
        value = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        return [Finding(f"secret {name} is not a JSON object: {put_secret_command(name)}")]
    missing = [key for key in REQUIRED_SECRET_KEYS if not isinstance(value.get(key), str) or not value[key]]
    if missing:
        return [Finding(f"secret {name} lacks {', '.join(missing)}: {put_secret_command(name)}")]
    return []


def image_is_pushed(caller: boto3.session.Session, image: Image) -> list[Finding]:
    if image.tag == UNRELEASED_IMAGE_TAG:
        fix = "set CANVALO_IMAGE_TAG to a pushed tag (then `make synth`) or pass --image-tag"
        return [Finding(f"image {image} is never pushed: {fix}")]
    ecr: Any = caller.client("ecr", region_name=image.region)
    try:
        ecr.describe_images(registryId=image.registry_id, repositoryName=image.repository, imageIds=[image.image_id()])
    except ClientError as error:
        if error_code(error) == "ImageNotFoundException":
            return [Finding(f"image {image} is not in ECR: the pipeline's Build pushes it (or `make image` and push)")]
        if error_code(error) == "RepositoryNotFoundException":
            missing = f"ECR repository {image.repository} does not exist in account {image.registry_id}"
            return [Finding(f"{missing}: deploy the pipeline stack")]
        raise
    return []


def guarded(
    what: str, permission: str, check: Callable[P, list[Finding]], *args: P.args, **kwargs: P.kwargs
) -> list[Finding]:
    """The check's findings, or one line when AWS would not answer it (a missing permission, throttling...)."""
    try:
        return check(*args, **kwargs)
    except ClientError as error:
        code = error_code(error)
        return [Finding(f"could not check {what}: {error.operation_name} failed with {code} (needs {permission})")]
    except BotoCoreError as error:
        return [Finding(f"could not check {what}: {error}")]


def check_stage_account(
    session: boto3.session.Session, stage: Stage, lookup: NameServerLookup, results: Results
) -> None:
    results.add(guarded(f"state bucket {stage.state_bucket}", "s3:ListBucket", state_bucket_exists, session, stage))
    if stage.lock_table:
        what = f"lock table {stage.lock_table}"
        results.add(guarded(what, "dynamodb:DescribeTable", lock_table_exists, session, stage))
    parameter = bootstrap_version_parameter(stage.app_name, stage.name)
    results.add(guarded(f"parameter {parameter}", "ssm:GetParameter", bootstrap_is_current, session, stage))
    for zone in stage.zones:
        permission = "route53:ListHostedZonesByName, route53:GetHostedZone"
        results.add(guarded(f"hosted zone {zone}", permission, zone_is_delegated, session, stage, zone, lookup))
    for secret in stage.secrets:
        permission = "secretsmanager:DescribeSecret"
        results.add(guarded(f"secret {secret.name}", permission, secret_is_set, session, stage, secret))


def preflight(
    stage: Stage, caller: boto3.session.Session, lookup: NameServerLookup, image_tag: str | None = None
) -> Results:
    """Every check; those in the stage's account only when there are credentials for it."""
    results = Results()
    caller_arn = caller_identity(caller, stage.region)
    if isinstance(caller_arn, Finding):
        results.add([caller_arn], counted=False)
        return results
    session = stage_session(caller, caller_arn, stage)
    if isinstance(session, Finding):
        results.add([session], counted=False)
    else:
        check_stage_account(session, stage, lookup, results)
    for synthesized in stage.images:
        image = replace(synthesized, tag=image_tag or synthesized.tag)
        results.add(guarded(f"image {image}", "ecr:DescribeImages", image_is_pushed, caller, image))
    return results


# -- DNS -------------------------------------------------------------------------------------------


def parent_name_servers(domain: str) -> list[str]:
    """The NS records one of the parent zone's own name servers holds for `domain`, asked of it directly:
    that is the delegation, whatever the zone itself or a resolver's cache says. Needs dnspython."""
    try:
        dns = {m: importlib.import_module(f"dns.{m}") for m in ("message", "name", "query", "rdatatype", "resolver")}
    except ImportError:
        raise DelegationUncheckedError("dnspython not installed") from None
    try:
        child = dns["name"].from_text(domain)
        parent_zone = dns["resolver"].zone_for_name(child.parent())
        server = str(dns["resolver"].resolve(parent_zone, "NS")[0].target)
        address = str(dns["resolver"].resolve(server, "A")[0])
        response = dns["query"].udp(dns["message"].make_query(child, "NS"), address, timeout=5)
    except Exception as error:  # any DNS failure leaves the delegation unchecked, not failed
        raise DelegationUncheckedError(f"DNS lookup failed ({type(error).__name__})") from None
    records = [*response.answer, *response.authority]
    ns = dns["rdatatype"].NS
    return [str(r.target) for rrset in records if rrset.name == child and rrset.rdtype == ns for r in rrset]


# -- command line ----------------------------------------------------------------------------------


def report(stage: str, results: Results) -> int:
    for line in results.notes:
        print(f"note: {line}", file=sys.stderr)
    for line in results.errors:
        print(f"error: {line}", file=sys.stderr)
    if results.errors:
        return EXIT_FAILED
    print(f"preflight {stage}: ok ({results.checks} checks)")
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    session: boto3.session.Session | None = None,
    lookup: NameServerLookup = parent_name_servers,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--cdktf-out", type=Path, required=True, help="the synthesized cdktf.out directory")
    parser.add_argument("--image-tag", help="check this tag (or sha256: digest) instead of the synthesized one")
    parser.add_argument(
        "--expect-image-digest",
        help="refuse stacks whose tasks run anything but this digest (the pipeline passes Build's IMAGE_DIGEST)",
    )
    parser.add_argument(
        "--role-arn",
        help="assume this role for the checks in the stage's account instead of the one its stacks name "
        "(the pipeline passes the stage's read-only plan role)",
    )
    args = parser.parse_args(argv)
    try:
        stage = load_stage(args.cdktf_out, args.stage)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.role_arn:
        stage = replace(stage, role_arn=args.role_arn)
    if args.expect_image_digest is not None:
        foreign = [str(image) for image in stage.images if image.tag != args.expect_image_digest]
        if foreign or not args.expect_image_digest:
            print(
                f"error: the {args.stage} stacks run {', '.join(foreign) or 'no image'}, not the image Build pushed "
                f"({args.expect_image_digest or 'no digest'}): release the commit again so that Build synthesizes "
                "its own image's digest",
                file=sys.stderr,
            )
            return EXIT_FAILED
    return report(args.stage, preflight(stage, session or boto3.session.Session(), lookup, args.image_tag))


if __name__ == "__main__":
    sys.exit(main())
