"""A stateful fake of the `terraform` CLI for the rehearsal: what the pipeline calls, with AWS's refusals.

    terraform version | init [-migrate-state] [-lockfile=readonly] | plan [-out=F] [-detailed-exitcode]
      [-refresh-only] | show -json F | apply (F | -auto-approve) | output (-json | -raw NAME) | state list

It reads `cdk.tf.json` in the working directory. State is a JSON object per stack, kept where the
stack's backend says: a local file, or the S3 object in the rehearsal's moto, read and written with the
backend's own credentials. Resources are not created in AWS except those whose existence something
else checks (buckets, the lock table, IAM roles, secrets, repositories, topics, distributions, hosted
zones, SSM parameters, metric alarms). The data sources that find what another stack or an administrator made
(`aws_secretsmanager_secret`, `aws_route53_zone`) are read from the rehearsal's moto.

It refuses what AWS and Terraform refuse, with their words:
- an S3 backend whose bucket is missing, or belongs to another account;
- credentials outside a provider's or backend's `allowed_account_ids`;
- an `assume_role` whose role does not exist or whose trust policy, as applied, does not allow the caller;
- a role trust policy naming a role that does not exist ("Invalid principal in policy");
- an ECS service waiting for steady state whose secret has no value or whose image tag is not in ECR;
- a saved plan applied after the state moved ("Saved plan is stale");
- destroying a resource with `prevent_destroy`; remote state that lacks the output a stack reads;
- a data source whose secret or hosted zone does not exist (its stage is not bootstrapped).

A scenario's fault file `faults/output-<stack>` makes the next `terraform output` of that stack fail once;
`faults/output-<stack>.at-apply` does so only in the stack's next Apply action (its read-only-lock init).

A scenario's fault file `faults/ecs-alarm-<stack>` makes ECS in that stack behave as with a release
whose tasks answer 5xx: when the service moves to a new task definition, its first deployment alarm
goes to ALARM and ECS rolls the service back to the task definition it ran. The apply still succeeds,
as Terraform's steady-state wait did before it read ECS's service deployments (terraform-provider-aws
#20858); `verify_rollout` is what fails the stage. moto keeps no failed deployment, so the alarm's
state is the record of the rollback here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tools.rehearse.world import WORLD_FILE_VARIABLE, World

VERSION = "1.13.4"
UNKNOWN = "\x00(known after apply)"
DATA_DIR = ".terraform"
BACKEND_RECORD = "backend.json"
# What an effect returns under this key is what the next refresh reads back (AWS changed it after the apply).
REFRESHED = "refreshed"
META_KEYS = {"//", "depends_on", "lifecycle", "provider", "count", "for_each", "timeouts"}
# A provider block of a dependency lock file (.terraform.lock.hcl): its address and locked version.
LOCKED_PROVIDER = re.compile(r'provider "([^"]+)" \{\s*version\s*=\s*"([^"]+)"')


def arguments(body: dict[str, Any]) -> dict[str, Any]:
    """A resource's or data source's arguments: its body without Terraform's meta-arguments. Only at the top:
    a nested block may hold an argument of the same name (a pipeline rule's `provider`)."""
    return {key: value for key, value in body.items() if key not in META_KEYS}


# Arguments whose change makes the provider replace the resource, by type ("*": every type).
FORCE_NEW: dict[str, set[str]] = {
    "*": {"name", "name_prefix"},
    "aws_s3_bucket": {"bucket"},
    "aws_lb": {"internal", "load_balancer_type"},
    "aws_lb_target_group": {"port", "protocol", "vpc_id", "target_type"},
    "aws_iam_role": {"path"},
    "aws_vpc": {"cidr_block"},
    "aws_subnet": {"cidr_block", "availability_zone", "vpc_id"},
    "aws_security_group": {"vpc_id", "description"},
    "aws_dynamodb_table": {"hash_key"},
}
# Every argument of these forces a new resource (ECS registers a new task definition revision).
IMMUTABLE_TYPES = {"aws_ecs_task_definition", "aws_iam_policy"}


class RefusedError(Exception):
    """Terraform or AWS said no; the message is what the real one prints after `Error: `."""


class TaintedError(RefusedError):
    """The resource was created but never became ready: it stays in the state, marked for replacement."""


# -- state ----------------------------------------------------------------------------------------


def empty_state() -> dict[str, Any]:
    """No state yet: Terraform gives a state its lineage when it first writes it."""
    return {"version": 4, "serial": 0, "lineage": "", "resources": {}, "outputs": {}}


@dataclass
class Backend:
    """Where a stack's state lives, reached with the credentials Terraform would use."""

    kind: str
    settings: dict[str, Any]
    directory: Path
    session: boto3.session.Session | None = None

    @property
    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "settings": {k: v for k, v in self.settings.items() if k != "//"}}

    def read(self) -> dict[str, Any]:
        if self.kind == "local":
            path = self.local_path
            return json.loads(path.read_text()) if path.exists() else empty_state()
        try:
            body = self._s3().get_object(Bucket=self.settings["bucket"], Key=self.settings["key"])["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return empty_state()
            raise
        state: dict[str, Any] = json.loads(body)
        return state

    def write(self, state: dict[str, Any]) -> None:
        text = json.dumps(state, indent=1, sort_keys=True)
        if self.kind == "local":
            self.local_path.write_text(text)
        else:
            self._s3().put_object(Bucket=self.settings["bucket"], Key=self.settings["key"], Body=text.encode())

    @property
    def local_path(self) -> Path:
        return (self.directory / str(self.settings.get("path", "terraform.tfstate"))).resolve()

    def _s3(self) -> Any:
        assert self.session is not None
        return self.session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


class Cloud:
    """The caller's credentials and AWS's side of each check."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.caller = boto3.session.Session(region_name=world.region)
        # Who each session is, asked once; the sessions are kept so that their ids stay theirs.
        self._identities: dict[int, dict[str, str]] = {}
        self._sessions: list[boto3.session.Session] = []

    def identity(self, session: boto3.session.Session) -> dict[str, str]:
        known = self._identities.get(id(session))
        if known:
            return known
        try:
            found = session.client("sts", endpoint_url=self.world.endpoint).get_caller_identity()
        except Exception as error:
            # Any failure to sign or to reach STS is "no valid credentials" to Terraform.
            raise RefusedError(f"No valid credential sources found: {error}") from None
        identity = {"Account": found["Account"], "Arn": found["Arn"], "UserId": found["UserId"]}
        self._identities[id(session)] = identity
        self._sessions.append(session)
        return identity

    def principal_arn(self, session: boto3.session.Session) -> str:
        """The IAM ARN of the caller as IAM conditions see it (`aws:PrincipalArn`): the role, with its path."""
        arn = self.identity(session)["Arn"]
        match = re.match(r"^arn:aws:sts::(\d{12}):assumed-role/([^/]+)/", arn)
        if not match:
            return arn
        account, name = match.groups()
        try:
            role = self.world.client(account, "iam").get_role(RoleName=name)["Role"]
        except ClientError:
            return f"arn:aws:iam::{account}:role/{name}"
        return str(role["Arn"])

    def assume(self, session: boto3.session.Session, role_arn: str, session_name: str) -> boto3.session.Session:
        """sts:AssumeRole as AWS answers it: the role must exist and its trust policy must allow the caller."""
        caller = self.principal_arn(session)
        match = ROLE_ARN.match(role_arn)
        if not match:
            raise RefusedError(f"assume_role: {role_arn!r} is not a role ARN")
        account, path, name = match.groups()
        denied = (
            f"Cannot assume IAM Role: AccessDenied: User: {caller} is not authorized to perform: "
            f"sts:AssumeRole on resource: {role_arn}"
        )
        try:
            role = self.world.client(account, "iam").get_role(RoleName=name)["Role"]
        except ClientError:
            raise RefusedError(f"{denied} (the role does not exist)") from None
        if role.get("Path", "/") != path:
            raise RefusedError(f"{denied} (the role's path is {role.get('Path')!r}, not {path!r})")
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        if not trust_allows(trust, caller):
            raise RefusedError(f"{denied} (its trust policy, as applied, does not allow {caller})")
        return self.world.session_for(self.world.role_credentials(role_arn, session_name))

    def session_in(self, settings: Mapping[str, Any], what: str) -> boto3.session.Session:
        """The caller's session, or the role it assumes; refused outside `allowed_account_ids`."""
        session = self.caller
        role = settings.get("assume_role")
        if isinstance(role, list):
            role = role[0] if role else None
        if role and role.get("role_arn"):
            session = self.assume(session, role["role_arn"], role.get("session_name") or "terraform")
        account = self.identity(session)["Account"]
        allowed = settings.get("allowed_account_ids")
        if allowed and account not in allowed:
            raise RefusedError(
                f"{what}: AWS account ID not allowed: {account} (allowed_account_ids: {', '.join(allowed)})"
            )
        return session


def trust_allows(policy: Mapping[str, Any], caller_arn: str, session_name: str | None = None) -> bool:
    """Does a trust policy let `caller_arn` (a role or user ARN) call sts:AssumeRole, naming the session
    `session_name` (for an `sts:RoleSessionName` condition)? Explicit denies win."""
    caller_account = caller_arn.split(":")[4]
    allowed = False
    for item in as_list(policy.get("Statement")):
        actions = as_list(item.get("Action"))
        if not any(fnmatch.fnmatchcase("sts:AssumeRole", a) for a in actions):
            continue
        principals = (
            as_list((item.get("Principal") or {}).get("AWS")) if isinstance(item.get("Principal"), dict) else []
        )
        if item.get("Principal") == "*":
            principals = ["*"]
        named = any(
            p in ("*", caller_arn, caller_account, f"arn:aws:iam::{caller_account}:root") for p in map(str, principals)
        )
        if not named or not conditions_hold(item.get("Condition") or {}, caller_arn, caller_account, session_name):
            continue
        if item.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def conditions_hold(
    conditions: Mapping[str, Any], caller_arn: str, caller_account: str, session_name: str | None = None
) -> bool:
    """The condition operators trust policies here use; any other operator or key is not satisfied."""
    context = {"aws:principalarn": caller_arn, "aws:principalaccount": caller_account}
    if session_name is not None:
        context["sts:rolesessionname"] = session_name
    for operator, tests in conditions.items():
        for key, values in tests.items():
            actual = context.get(key.lower())
            if actual is None:
                return False
            wanted = [str(v) for v in as_list(values)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in wanted
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(actual, pattern) for pattern in wanted)
            else:
                return False
            if not ok:
                return False
    return True


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# -- expressions ----------------------------------------------------------------------------------


def next_interpolation(text: str, start: int) -> int:
    """Where the next `${` that opens an interpolation is; `$${` is a literal `${` (Terraform's escape)."""
    found = text.find("${", start)
    while found > 0 and text[found - 1] == "$":
        found = text.find("${", found + 2)
    return found


def literal(text: str) -> str:
    """The characters a string's literal part stands for: Terraform's escapes undone."""
    return text.replace("$${", "${").replace("%%{", "%{")


def expressions(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, inner) of every `${...}` in a string, nested braces included."""
    start = next_interpolation(text, 0)
    while start != -1:
        depth, index = 0, start + 1
        while index < len(text):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        yield start, index + 1, text[start + 2 : index]
        start = next_interpolation(text, index + 1)


REFERENCE = re.compile(r"^(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_-]+|\[\d+\])*)$")
ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role(/.*/|/)([^/]+)$")
RESOURCE_REFERENCE = re.compile(r"(?<![.\w])(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)")
ELEMENT = re.compile(r"^element\((.+),\s*(\d+)\)$")


def stable_hash(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:10]


SERVICE_OF_TYPE = {
    "aws_lb": "elasticloadbalancing",
    "aws_lb_target_group": "elasticloadbalancing",
    "aws_lb_listener": "elasticloadbalancing",
    "aws_cloudwatch_log_group": "logs",
    "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_codestarconnections_connection": "codestar-connections",
    "aws_cloudwatch_event_rule": "events",
}


@dataclass
class Stack:
    """One stack's configuration, prior state and the plan computed from them."""

    name: str
    config: dict[str, Any]
    state: dict[str, Any]
    account: str
    region: str
    cloud: Cloud
    remote_reader: Callable[[Mapping[str, Any]], dict[str, Any]]
    # The provider's credentials: data sources that look something up in AWS use them.
    session: boto3.session.Session | None = None
    actions: dict[str, list[str]] = field(default_factory=dict)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=dict)
    # During apply every referenced attribute is known; during plan, a new resource's computed ones are not.
    applying: bool = False
    _resources: dict[str, dict[str, Any]] | None = None
    _looked_up: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resources(self) -> dict[str, dict[str, Any]]:
        if self._resources is not None:
            return self._resources
        found = {}
        for kind, instances in (self.config.get("resource") or {}).items():
            for name, body in instances.items():
                found[f"{kind}.{name}"] = body
        self._resources = found
        return found

    # Values

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.interpolate(value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            # "//" is cdktn's metadata, wherever it sits; the other meta-arguments only head a block's body.
            return {k: self.resolve(v) for k, v in value.items() if k != "//"}
        return value

    def interpolate(self, text: str) -> Any:
        found = list(expressions(text))
        if len(found) == 1 and found[0][0] == 0 and found[0][1] == len(text):
            return self.evaluate(found[0][2])
        result, last = "", 0
        for start, end, inner in found:
            value = self.evaluate(inner)
            if value == UNKNOWN or (isinstance(value, str) and UNKNOWN in value):
                return UNKNOWN
            result += literal(text[last:start]) + (value if isinstance(value, str) else json.dumps(value))
            last = end
        return result + literal(text[last:])

    def evaluate(self, expression: str) -> Any:
        expression = expression.strip()
        if expression == "terraform.workspace":
            return "default"
        element = ELEMENT.match(expression)
        if element:
            items = self.evaluate(element.group(1))
            return UNKNOWN if items == UNKNOWN else items[int(element.group(2)) % len(items)]
        reference = None if expression.startswith(("each.", "count.", "self.")) else REFERENCE.match(expression)
        if not reference:
            # for-expressions, functions and for_each's each.* serve wiring only: a stable stand-in.
            return f"expr-{stable_hash(expression)}"
        is_data, kind, name, rest = reference.groups()
        path = [p for p in re.split(r"\.|\[(\d+)\]", rest) if p]
        if is_data:
            return self.data_value(kind, name, path)
        return self.resource_attribute(f"{kind}.{name}", path)

    def data_value(self, kind: str, name: str, path: list[str]) -> Any:
        body = self.config["data"][kind][name]
        if kind == "aws_iam_policy_document":
            return dig(render_policy(self.resolve(body)), path[1:]) if path[0] == "json" else UNKNOWN
        if kind == "terraform_remote_state":
            outputs = self.remote_reader(self.resolve(body.get("config") or {}))
            if path[0] != "outputs":
                return UNKNOWN
            if path[1] not in outputs:
                raise RefusedError(
                    f'Unsupported attribute: data.terraform_remote_state.{name}.outputs has no attribute "{path[1]}" '
                    f"(the stack at {body['config'].get('key')} has not applied that output)"
                )
            return dig(outputs[path[1]]["value"], path[2:])
        if kind in LOOKED_UP:
            return dig(self.look_up(kind, name), path)
        data: dict[str, dict[str, Any]] = {
            "aws_caller_identity": {"account_id": self.account, "arn": f"arn:aws:iam::{self.account}:root"},
            "aws_region": {"name": self.region, "id": self.region, "region": self.region},
            "aws_partition": {"partition": "aws", "dns_suffix": "amazonaws.com"},
            "aws_availability_zones": {"names": [f"{self.region}{z}" for z in "abc"]},
            "aws_elb_service_account": {"arn": "arn:aws:iam::156460612806:root"},
        }
        values = data.get(kind, {})
        return dig(values, path) if path and path[0] in values else f"data-{stable_hash(kind, name, *path)}"

    def look_up(self, kind: str, name: str) -> dict[str, Any]:
        """A data source read from AWS (once per run), refused as the provider refuses it when nothing matches."""
        address = f"data.{kind}.{name}"
        if address not in self._looked_up:
            body = self.resolve(arguments(self.config["data"][kind][name]))
            assert self.session is not None, "data sources that read AWS need the provider's session"
            self._looked_up[address] = LOOKED_UP[kind](self.session, self.cloud.world.endpoint, body)
        return self._looked_up[address]

    def read_data_sources(self) -> None:
        """Terraform reads every data source while it plans, referenced or not."""
        for kind in LOOKED_UP:
            for name in (self.config.get("data") or {}).get(kind, {}):
                self.look_up(kind, name)

    def resource_attribute(self, address: str, path: list[str]) -> Any:
        if address not in self.resources():
            raise RefusedError(f"Reference to undeclared resource {address}")
        self.plan_resource(address)
        attribute, rest = path[0], path[1:]
        desired = self.desired[address]
        if attribute in desired:
            return dig(desired[attribute], rest)
        prior = self.state["resources"].get(address, {})
        if self.actions[address] in (["create"], ["delete", "create"], ["create", "delete"]) and not self.applying:
            return UNKNOWN
        computed = prior.get("computed", {}) if self.actions[address] == ["no-op"] or not self.applying else {}
        if attribute in computed:
            return dig(computed[attribute], rest)
        return dig(self.computed(address, attribute), rest)

    def computed(self, address: str, attribute: str) -> Any:
        kind, name = address.split(".", 1)
        body = self.desired.get(address) or {}
        generation = self.generation.get(address, 0)
        label = str(body.get("name") or body.get("bucket") or name)
        token = stable_hash(self.account, address, generation)
        if attribute == "arn":
            if kind == "aws_iam_role":
                return f"arn:aws:iam::{self.account}:role{body.get('path', '/')}{label}"
            if kind == "aws_s3_bucket":
                return f"arn:aws:s3:::{label}"
            if kind == "aws_secretsmanager_secret":
                return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{label}-{token[:6]}"
            service = SERVICE_OF_TYPE.get(kind, kind.removeprefix("aws_").split("_")[0])
            return f"arn:aws:{service}:{self.region}:{self.account}:{kind.removeprefix('aws_')}/{label}/{token}"
        if attribute in ("id", "bucket", "name"):
            return (
                label if kind in ("aws_s3_bucket", "aws_iam_role", "aws_secretsmanager_secret") else f"{label}-{token}"
            )
        if attribute == "dns_name":
            return f"{label}-{token}.{self.region}.elb.amazonaws.com"
        if attribute == "domain_name":
            return f"d{token}.cloudfront.net"
        if attribute in ("bucket_regional_domain_name", "bucket_domain_name") and kind == "aws_s3_bucket":
            return f"{label}.s3.{self.region}.amazonaws.com"
        if attribute == "repository_url":
            return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{label}"
        if attribute == "arn_suffix":
            return f"{kind}/{label}/{token}"
        return f"{attribute}-{token}"

    def dependencies(self, address: str) -> list[str]:
        """The resources an address refers to or names in depends_on."""
        body = self.resources()[address]
        text = json.dumps({k: v for k, v in body.items() if k != "//"})
        found = [f"{kind}.{name}" for kind, name in RESOURCE_REFERENCE.findall(text)]
        found += [d for d in as_list(body.get("depends_on")) if isinstance(d, str)]
        known = self.resources()
        return [d for d in dict.fromkeys(found) if d in known and d != address]

    # Plan

    def plan_resource(self, address: str) -> None:
        if address in self.actions:
            return
        self.actions[address] = ["no-op"]  # a cycle guard; replaced below
        body = self.resources()[address]
        desired = self.resolve(arguments(body))
        self.desired[address] = desired
        prior = self.state["resources"].get(address)
        self.generation[address] = prior["generation"] if prior else 0
        ignored = set(as_list((body.get("lifecycle") or {}).get("ignore_changes")))
        if prior is None:
            actions = ["create"]
        else:
            kind = address.split(".", 1)[0]
            before, after = prior["config"], desired
            differing = {k for k in set(before) | set(after) if before.get(k) != after.get(k)} - ignored
            differing |= self.refreshed_differences(kind, before)
            forcing = FORCE_NEW["*"] | FORCE_NEW.get(kind, set())
            if prior.get("tainted") or (differing and (kind in IMMUTABLE_TYPES or differing & forcing)):
                lifecycle = body.get("lifecycle") or {}
                actions = ["create", "delete"] if lifecycle.get("create_before_destroy") else ["delete", "create"]
            elif differing:
                actions = ["update"]
            else:
                actions = ["no-op"]
        if "delete" in actions and (body.get("lifecycle") or {}).get("prevent_destroy"):
            raise RefusedError(
                f"Instance cannot be destroyed: resource {address} has lifecycle.prevent_destroy set, "
                "but the plan calls for this resource to be destroyed"
            )
        self.actions[address] = actions
        if "delete" in actions:
            self.generation[address] += 1

    def refreshed_differences(self, kind: str, before: Mapping[str, Any]) -> set[str]:
        """Terraform refreshes before it plans: a service someone moved to another task definition (a restore,
        pipelines/restore.py) is planned back to the configured one. Only that attribute is read from AWS here."""
        if kind != "aws_ecs_service" or self.session is None or self.applying:
            return set()
        ecs = self.session.client("ecs", endpoint_url=self.cloud.world.endpoint)
        running = ecs.describe_services(cluster=before.get("cluster"), services=[before.get("name")])["services"]
        live = [s["taskDefinition"] for s in running if s.get("status") == "ACTIVE"]
        return {"task_definition"} if live and live[0] != before.get("task_definition") else set()

    def plan(self) -> dict[str, Any]:
        self.read_data_sources()
        for address in self.resources():
            self.plan_resource(address)
        for address in self.state["resources"]:
            if address not in self.resources():
                # Removing the block removes its prevent_destroy too: Terraform plans the delete.
                self.actions[address] = ["delete"]
        outputs = {}
        for name, body in (self.config.get("output") or {}).items():
            value = self.resolve(body.get("value"))
            prior = self.state["outputs"].get(name)
            if prior is None:
                action = ["create"]
            elif value == UNKNOWN or prior["value"] != value:
                action = ["update"]
            else:
                action = ["no-op"]
            outputs[name] = {"actions": action, "value": value, "sensitive": bool(body.get("sensitive"))}
        for name in self.state["outputs"]:
            if name not in outputs:
                outputs[name] = {"actions": ["delete"], "value": None, "sensitive": False}
        return outputs


def secret_by_name(session: boto3.session.Session, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """data.aws_secretsmanager_secret by `name` (or `arn`): its ARN, name and id as Secrets Manager has them."""
    wanted = str(body.get("name") or body.get("arn"))
    try:
        found = session.client("secretsmanager", endpoint_url=endpoint).describe_secret(SecretId=wanted)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        raise RefusedError(f"reading Secrets Manager Secret ({wanted}): couldn't find resource") from None
    return {"arn": found["ARN"], "id": found["ARN"], "name": found["Name"], "description": found.get("Description")}


def hosted_zone_by_name(session: boto3.session.Session, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """data.aws_route53_zone by `name` and `private_zone`: its id and name servers, from Route53."""
    wanted = str(body["name"]).rstrip(".").lower()
    private = bool(body.get("private_zone", False))
    route53 = session.client("route53", endpoint_url=endpoint)
    matches = [
        zone
        for zone in route53.list_hosted_zones()["HostedZones"]
        if zone["Name"].rstrip(".").lower() == wanted and bool(zone.get("Config", {}).get("PrivateZone")) == private
    ]
    if len(matches) != 1:
        problem = "no matching Route 53 Hosted Zone found" if not matches else "multiple Route 53 Hosted Zones matched"
        raise RefusedError(f"{problem} (name {wanted}, private_zone {str(private).lower()})")
    zone_id = matches[0]["Id"].split("/")[-1]
    servers = route53.get_hosted_zone(Id=zone_id).get("DelegationSet", {}).get("NameServers", [])
    return {"zone_id": zone_id, "id": zone_id, "name": wanted, "name_servers": list(servers)}


LOOKED_UP: dict[str, Callable[[boto3.session.Session, str, Mapping[str, Any]], dict[str, Any]]] = {
    "aws_secretsmanager_secret": secret_by_name,
    "aws_route53_zone": hosted_zone_by_name,
}


def dig(value: Any, path: Sequence[str]) -> Any:
    for step in path:
        if value == UNKNOWN:
            return UNKNOWN
        if isinstance(value, list):
            value = value[int(step)]
        elif isinstance(value, dict):
            value = value.get(step)
        else:
            return UNKNOWN
    return value


def render_policy(document: Mapping[str, Any]) -> str:
    """What data.aws_iam_policy_document's `json` attribute holds, for the arguments the stacks use."""
    statements = []
    for item in as_list(document.get("statement")):
        rendered: dict[str, Any] = {"Effect": item.get("effect", "Allow")}
        if item.get("sid"):
            rendered["Sid"] = item["sid"]
        for key, name in (("actions", "Action"), ("not_actions", "NotAction")):
            if item.get(key):
                rendered[name] = item[key] if len(item[key]) > 1 else item[key][0]
        for key, name in (("resources", "Resource"), ("not_resources", "NotResource")):
            if item.get(key):
                rendered[name] = item[key] if len(item[key]) > 1 else item[key][0]
        for principal in as_list(item.get("principals")):
            identifiers = principal["identifiers"]
            rendered.setdefault("Principal", {})[principal["type"]] = (
                identifiers if len(identifiers) > 1 else identifiers[0]
            )
        for condition in as_list(item.get("condition")):
            values = condition["values"]
            rendered.setdefault("Condition", {}).setdefault(condition["test"], {})[condition["variable"]] = (
                values if len(values) > 1 else values[0]
            )
        statements.append(rendered)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


# -- what applying does in AWS --------------------------------------------------------------------


class Effects:
    """The resources whose existence AWS or a later action checks: made real in the rehearsal's moto."""

    def __init__(self, stack: Stack, session: boto3.session.Session, faults: Path | None = None) -> None:
        self.stack = stack
        self.session = session
        self.world = stack.cloud.world
        self.world_faults = faults

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.world.endpoint)  # type: ignore[call-overload]

    def apply(self, address: str, actions: list[str], body: dict[str, Any]) -> dict[str, Any]:
        """Carry out one change; returns attributes AWS assigned (ids, names) to keep in the state."""
        kind = address.split(".", 1)[0]
        handler = getattr(self, kind, None)
        if handler is None or actions == ["delete"]:
            return {}
        result: dict[str, Any] = handler(address, body, actions) or {}
        return result

    def aws_s3_bucket(self, address: str, body: dict[str, Any], actions: list[str]) -> None:
        owner = self.world.owner_of_bucket(body["bucket"], likely=self.stack.account)
        if owner == self.stack.account:
            return
        if owner is not None:
            raise RefusedError(f"creating S3 Bucket ({body['bucket']}): BucketAlreadyExists (owned by account {owner})")
        self.client("s3").create_bucket(
            Bucket=body["bucket"], CreateBucketConfiguration={"LocationConstraint": self.stack.region}
        )

    def aws_dynamodb_table(self, address: str, body: dict[str, Any], actions: list[str]) -> None:
        dynamodb = self.client("dynamodb")
        if body["name"] in dynamodb.list_tables()["TableNames"]:
            return
        dynamodb.create_table(
            TableName=body["name"],
            KeySchema=[{"AttributeName": body["hash_key"], "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": body["hash_key"], "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def aws_iam_role(self, address: str, body: dict[str, Any], actions: list[str]) -> None:
        trust = body["assume_role_policy"]
        for statement in as_list(json.loads(trust).get("Statement")):
            principal = statement.get("Principal")
            for arn in as_list(principal.get("AWS")) if isinstance(principal, dict) else []:
                match = ROLE_ARN.match(str(arn))
                if not match:
                    continue
                account, path, name = match.groups()
                try:
                    found = self.world.client(account, "iam").get_role(RoleName=name)["Role"]
                except ClientError:
                    found = None
                if found is None or found.get("Path", "/") != path:
                    raise RefusedError(
                        f"creating IAM Role ({body['name']}): MalformedPolicyDocument: "
                        f'Invalid principal in policy: "AWS":"{arn}"'
                    ) from None
        iam = self.client("iam")
        try:
            iam.get_role(RoleName=body["name"])
            iam.update_assume_role_policy(RoleName=body["name"], PolicyDocument=trust)
        except ClientError:
            iam.create_role(RoleName=body["name"], Path=body.get("path", "/"), AssumeRolePolicyDocument=trust)

    def aws_secretsmanager_secret(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        secrets = self.client("secretsmanager")
        try:
            arn = secrets.describe_secret(SecretId=body["name"])["ARN"]
        except ClientError:
            arn = secrets.create_secret(Name=body["name"])["ARN"]
        return {"arn": arn, "id": arn}

    def aws_route53_zone(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        route53 = self.client("route53")
        name = str(body["name"]).rstrip(".")
        existing = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"].rstrip(".") == name]
        if existing:
            zone_id = existing[0]["Id"].split("/")[-1]
            servers = route53.get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
        else:
            created = route53.create_hosted_zone(
                Name=name,
                CallerReference=f"{address}-{uuid.uuid4()}",
                HostedZoneConfig={"Comment": body.get("comment", "")},
            )
            zone_id = created["HostedZone"]["Id"].split("/")[-1]
            servers = created["DelegationSet"]["NameServers"]
        return {
            "id": zone_id,
            "zone_id": zone_id,
            "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
            "name_servers": list(servers),
        }

    def aws_ssm_parameter(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        value = body.get("value", body.get("insecure_value"))
        self.client("ssm").put_parameter(Name=body["name"], Value=str(value), Type=body["type"], Overwrite=True)
        return {"arn": f"arn:aws:ssm:{self.stack.region}:{self.stack.account}:parameter/{body['name'].lstrip('/')}"}

    def aws_ecr_repository(self, address: str, body: dict[str, Any], actions: list[str]) -> None:
        ecr = self.client("ecr")
        try:
            ecr.describe_repositories(repositoryNames=[body["name"]])
        except ClientError:
            ecr.create_repository(repositoryName=body["name"])

    def aws_sns_topic(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        return {"arn": self.client("sns").create_topic(Name=body["name"])["TopicArn"]}

    def aws_cloudfront_distribution(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        prior = self.stack.state["resources"].get(address, {}).get("computed", {})
        if "id" in prior and "create" not in actions:
            return dict(prior)
        # The frontend deploy checks that the distribution serves its bucket: keep the S3 origins as declared.
        buckets = [o for o in as_list(body.get("origin")) if ".s3." in str(o.get("domain_name"))]
        if not buckets:
            raise RefusedError(f"creating CloudFront Distribution ({address}): the rehearsal models S3 origins only")
        origins = [
            {"Id": o["origin_id"], "DomainName": o["domain_name"], "S3OriginConfig": {"OriginAccessIdentity": ""}}
            for o in buckets
        ]
        created = self.client("cloudfront").create_distribution(
            DistributionConfig={
                "CallerReference": f"{address}-{uuid.uuid4()}",
                "Comment": address,
                "Enabled": True,
                "Origins": {"Quantity": len(origins), "Items": origins},
                "DefaultCacheBehavior": {
                    "TargetOriginId": origins[0]["Id"],
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "MinTTL": 0,
                    "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                },
            }
        )["Distribution"]
        return {"id": created["Id"], "arn": created["ARN"], "domain_name": created["DomainName"]}

    def aws_ecs_cluster(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        arn = self.client("ecs").create_cluster(clusterName=body["name"])["cluster"]["clusterArn"]
        return {"arn": arn, "id": arn}

    def aws_ecs_task_definition(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        """Registers a new revision, as every create or replace does: the service and verify_rollout see its ARN."""
        containers = [
            {"name": c["name"], "image": c["image"], "environment": c.get("environment", []), "essential": True}
            for c in json.loads(body["container_definitions"])
        ]
        registered = self.client("ecs").register_task_definition(
            family=body["family"],
            containerDefinitions=containers,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=str(body["cpu"]),
            memory=str(body["memory"]),
        )["taskDefinition"]
        # Replacing one deregisters the revision it replaces (the provider's delete, without skip_destroy): ECS
        # then refuses to move a service back to it, which pipelines/restore.py must handle.
        prior = (self.stack.state["resources"].get(address) or {}).get("computed", {}).get("arn")
        if len(actions) == 2 and prior and not body.get("skip_destroy"):
            self.client("ecs").deregister_task_definition(taskDefinition=prior)
        return {"arn": registered["taskDefinitionArn"], "revision": registered["revision"]}

    def aws_ecs_service(self, address: str, body: dict[str, Any], actions: list[str]) -> dict[str, Any]:
        problems = self.tasks_cannot_start()
        if problems and body.get("wait_for_steady_state"):
            raise TaintedError(
                f"waiting for ECS Service ({body['name']}) to reach steady state: timeout while waiting for state "
                f"to become 'tfSTABLE' (last state: 'tfPENDING', timeout: 20m0s); its tasks stop: {'; '.join(problems)}"
            )
        # The service runs the task definition it names: what verify_rollout and the probe read back.
        ecs, cluster, name = self.client("ecs"), body["cluster"], body["name"]
        alarms = (as_list(body.get("alarms")) or [{}])[0]
        wanted: dict[str, Any] = {
            "taskDefinition": body["task_definition"],
            "desiredCount": int(body.get("desired_count") or 1),
            "deploymentConfiguration": {
                "alarms": {
                    "alarmNames": list(alarms.get("alarm_names") or []),
                    "enable": bool(alarms.get("enable")),
                    "rollback": bool(alarms.get("rollback")),
                }
            },
        }
        active = [
            s for s in ecs.describe_services(cluster=cluster, services=[name])["services"] if s["status"] == "ACTIVE"
        ]
        if not active:
            service = ecs.create_service(cluster=cluster, serviceName=name, launchType="FARGATE", **wanted)["service"]
            return {"id": service["serviceArn"]}
        previous = active[0]["taskDefinition"]
        service = ecs.update_service(cluster=cluster, service=name, **wanted)["service"]
        if previous != body["task_definition"] and self.release_trips_an_alarm(body):
            service = ecs.update_service(cluster=cluster, service=name, taskDefinition=previous)["service"]
            return {"id": service["serviceArn"], REFRESHED: {"task_definition": previous}}
        return {"id": service["serviceArn"]}

    def release_trips_an_alarm(self, body: dict[str, Any]) -> bool:
        """With the scenario's fault, the new tasks answer 5xx: ECS's first deployment alarm goes to ALARM and,
        with rollback on, ECS goes back to the previous task definition (a deployment that COMPLETED)."""
        faulty = self.world_faults is not None and (self.world_faults / f"ecs-alarm-{self.stack.name}").exists()
        alarms = (as_list(body.get("alarms")) or [{}])[0]
        names = list(alarms.get("alarm_names") or [])
        if not faulty or not names or not (alarms.get("enable") and alarms.get("rollback")):
            return False
        self.client("cloudwatch").set_alarm_state(
            AlarmName=names[0],
            StateValue="ALARM",
            StateReason="the new release's tasks answer 5xx (a fault the rehearsal injected)",
        )
        return True

    def aws_cloudwatch_metric_alarm(self, address: str, body: dict[str, Any], actions: list[str]) -> None:
        """The alarm, so that ECS (and verify_rollout) can read its state; a metric query alarm gets one
        stand-in metric, since nothing here publishes datapoints."""
        metric = {"Namespace": body.get("namespace") or "AWS/ApplicationELB", "MetricName": body.get("metric_name")}
        self.client("cloudwatch").put_metric_alarm(
            AlarmName=body["alarm_name"],
            AlarmDescription=str(body.get("alarm_description") or ""),
            Namespace=metric["Namespace"],
            MetricName=metric["MetricName"] or "RequestCount",
            Statistic=str(body.get("statistic") or "Sum"),
            Period=int(body.get("period") or 300),
            EvaluationPeriods=int(body["evaluation_periods"]),
            Threshold=float(body["threshold"]),
            ComparisonOperator=body["comparison_operator"],
            TreatMissingData=str(body.get("treat_missing_data") or "missing"),
        )

    def tasks_cannot_start(self) -> list[str]:
        """Why the stack's task definition cannot start a task: a missing image tag or secret value."""
        problems: list[str] = []
        for address, body in self.stack.desired.items():
            if not address.startswith("aws_ecs_task_definition."):
                continue
            for container in json.loads(body["container_definitions"]):
                problems += self.image_problem(container["image"])
                for secret in container.get("secrets", []):
                    problems += self.secret_problem(secret["valueFrom"])
        return sorted(set(problems))

    def image_problem(self, image: str) -> list[str]:
        match = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)[:@](.+)$", image)
        if not match:
            return [f"CannotPullContainerError: {image} is not in ECR"]
        account, region, repository, tag = match.groups()
        ids = [{"imageDigest": tag}] if tag.startswith("sha256:") else [{"imageTag": tag}]
        try:
            self.world.client(account, "ecr", region).describe_images(repositoryName=repository, imageIds=ids)
        except ClientError:
            return [f"CannotPullContainerError: {image}: not found"]
        return []

    def secret_problem(self, value_from: str) -> list[str]:
        arn, _, rest = value_from.partition(":secret:")
        name_and_key = rest.split(":")
        secret_arn, key = f"{arn}:secret:{name_and_key[0]}", name_and_key[1] if len(name_and_key) > 1 else ""
        try:
            value = self.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        except ClientError:
            return [f"ResourceInitializationError: unable to retrieve secret from asm: {secret_arn} has no value"]
        try:
            keys = json.loads(value)
        except json.JSONDecodeError:
            return [f"ResourceInitializationError: {secret_arn} is not JSON"]
        if key and key not in keys:
            return [f"ResourceInitializationError: {secret_arn} has no key {key}"]
        return []


# -- the commands ---------------------------------------------------------------------------------


class Terraform:
    def __init__(self, directory: Path, world: World, faults: Path) -> None:
        self.directory = directory
        self.world = world
        # A scenario leaves `output-<stack>` here to make reading that stack's outputs fail once (after its apply),
        # or `ecs-alarm-<stack>` to make its ECS service roll a new release back (see the module's docstring).
        self.faults = faults
        self.cloud = Cloud(world)
        path = directory / "cdk.tf.json"
        if not path.exists():
            raise RefusedError(f"No configuration files in {directory}")
        self.config: dict[str, Any] = json.loads(path.read_text())
        self.name = directory.name

    # Backend and providers

    def backend(self) -> Backend:
        declared = (self.config.get("terraform") or {}).get("backend") or {"local": {}}
        ((kind, settings),) = declared.items()
        backend = Backend(kind, dict(settings), self.directory)
        if kind == "s3":
            backend.session = self.reach_bucket(settings, f"backend of {self.name}")
        return backend

    def reach_bucket(self, settings: Mapping[str, Any], what: str) -> boto3.session.Session:
        session = self.cloud.session_in(settings, what)
        account = self.cloud.identity(session)["Account"]
        owner = self.world.owner_of_bucket(settings["bucket"], likely=account)
        if owner is None:
            raise RefusedError(
                f'Failed to get existing workspaces: S3 bucket "{settings["bucket"]}" does not exist. '
                "The referenced S3 bucket must have been previously created."
            )
        if owner != account:
            raise RefusedError(
                f'Failed to get existing workspaces: S3 bucket "{settings["bucket"]}": AccessDenied: it belongs to '
                f"account {owner}, and these credentials are account {account}"
            )
        return session

    def provider_session(self) -> tuple[boto3.session.Session, str, str]:
        providers = (self.config.get("provider") or {}).get("aws") or [{}]
        sessions = [
            self.cloud.session_in(p, f"provider aws{'.' + p['alias'] if p.get('alias') else ''}") for p in providers
        ]
        main = providers[0]
        region = main.get("region") or self.world.region
        session = sessions[0]
        return session, self.cloud.identity(session)["Account"], region

    def read_remote(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        session = self.reach_bucket(settings, "data.terraform_remote_state")
        backend = Backend("s3", dict(settings), self.directory, session)
        outputs: dict[str, Any] = backend.read()["outputs"]
        return outputs

    def stack(self, state: dict[str, Any]) -> tuple[Stack, boto3.session.Session]:
        session, account, region = self.provider_session()
        stack = Stack(self.name, self.config, state, account, region, self.cloud, self.read_remote, session)
        return stack, session

    def initialized(self) -> Backend:
        record_path = self.directory / DATA_DIR / BACKEND_RECORD
        backend = self.backend()
        if not record_path.exists() or json.loads(record_path.read_text()) != backend.record:
            raise RefusedError('Backend initialization required, please run "terraform init"')
        return backend

    # Commands

    def init(self, args: Sequence[str]) -> int:
        record_path = self.directory / DATA_DIR / BACKEND_RECORD
        backend = self.backend()
        previous = json.loads(record_path.read_text()) if record_path.exists() else None
        if previous and previous != backend.record:
            if "-migrate-state" in args or "-force-copy" in args:
                old = Backend(previous["kind"], previous["settings"], self.directory)
                if old.kind == "local":
                    moved = old.read()
                    if backend.read()["serial"] == 0 and moved["serial"]:
                        backend.write(moved)
                        print(f"Successfully migrated the state of {self.name} to the {backend.kind} backend.")
            elif "-reconfigure" not in args:
                raise RefusedError(
                    "Backend configuration changed: run terraform init -migrate-state to move the state, "
                    "or -reconfigure to leave it"
                )
        lock = self.directory / ".terraform.lock.hcl"
        # Terraform reads a source without a namespace ("aws") as hashicorp's, and records the registry's address.
        required = {
            f"registry.terraform.io/{'' if '/' in spec.get('source', name) else 'hashicorp/'}"
            f"{spec.get('source', name)}": str(spec.get("version", ""))
            for name, spec in ((self.config.get("terraform") or {}).get("required_providers") or {}).items()
        }
        armed = self.faults / f"output-{self.name}.at-apply"
        if "-lockfile=readonly" in args and armed.exists():
            # Only the Apply action initializes with the planned lock file read-only: its `terraform output`
            # meets the fault, while Plan, which reads the same state's outputs, does not.
            armed.rename(self.faults / f"output-{self.name}")
        if "-lockfile=readonly" in args:
            # Terraform's refusals: without a lock (or without a provider in it) every provider is a change to the
            # lock, which -lockfile=readonly forbids; a locked version outside the constraint needs -upgrade.
            locked = dict(LOCKED_PROVIDER.findall(lock.read_text())) if lock.exists() else {}
            for source, version in sorted(required.items()):
                if source not in locked:
                    raise RefusedError(
                        "Provider dependency changes detected: Changes to the required provider dependencies were "
                        'detected, but the lock file is read-only. To use and record these requirements, run "terraform '
                        'init" without the "-lockfile=readonly" flag.'
                    )
                if version and locked[source] != version:
                    raise RefusedError(
                        f"Failed to query available provider packages: locked provider {source} {locked[source]} "
                        f"does not match configured version constraint {version}; must use terraform init -upgrade "
                        "to allow selection of new versions"
                    )
        else:
            lock.write_text(
                "".join(f'provider "{source}" {{\n  version = "{v}"\n}}\n' for source, v in sorted(required.items()))
            )
        record_path.parent.mkdir(exist_ok=True)
        record_path.write_text(json.dumps(backend.record))
        print("Terraform has been successfully initialized!")
        return 0

    def plan(self, args: Sequence[str]) -> int:
        backend = self.initialized()
        state = backend.read()
        stack, _ = self.stack(state)
        refresh_only = "-refresh-only" in args
        outputs = {} if refresh_only else stack.plan()
        actions = {} if refresh_only else stack.actions
        document = self.plan_document(stack, actions, outputs)
        changed = any(a != ["no-op"] for a in actions.values()) or any(
            o["actions"] != ["no-op"] for o in outputs.values()
        )
        saved = {
            "fake_terraform_plan": 1,
            "stack": self.name,
            "lineage": state["lineage"],
            "serial": state["serial"],
            "refresh_only": refresh_only,
            "document": document,
            # A saved plan carries the configuration it was made from; apply uses that, not the directory's.
            "config": self.config,
        }
        out = next((a.removeprefix("-out=") for a in args if a.startswith("-out=")), None)
        if out:
            Path(out).write_text(json.dumps(saved))
        counts = {kind: sum(1 for a in actions.values() if a == wanted) for kind, wanted in PLAN_WORDS.items()}
        if changed:
            print(f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['destroy']} to destroy.")
        else:
            print("No changes. Your infrastructure matches the configuration.")
        return 2 if changed and "-detailed-exitcode" in args else 0

    def plan_document(
        self, stack: Stack, actions: Mapping[str, list[str]], outputs: Mapping[str, dict[str, Any]]
    ) -> dict[str, Any]:
        def known(value: Any) -> Any:
            return None if value == UNKNOWN else value

        changes = []
        for address, action in actions.items():
            kind, name = address.split(".", 1)
            prior = stack.state["resources"].get(address)
            after = stack.desired.get(address) if action != ["delete"] else None
            changes.append(
                {
                    "address": address,
                    "mode": "managed",
                    "type": kind,
                    "name": name,
                    "change": {
                        "actions": action,
                        "before": prior["config"] if prior else None,
                        "after": {k: known(v) for k, v in after.items()} if after else None,
                        "after_unknown": {k: True for k, v in (after or {}).items() if v == UNKNOWN},
                    },
                }
            )
        return {
            "format_version": "1.2",
            "terraform_version": VERSION,
            "resource_changes": changes,
            "resource_drift": [],
            "output_changes": {
                name: {
                    "actions": o["actions"],
                    "before": stack.state["outputs"].get(name, {}).get("value"),
                    "after": known(o["value"]),
                    "after_unknown": o["value"] == UNKNOWN,
                    "after_sensitive": o["sensitive"],
                }
                for name, o in outputs.items()
            },
        }

    def show(self, args: Sequence[str]) -> int:
        saved = json.loads(Path(args[-1]).read_text())
        print(json.dumps(saved["document"]))
        return 0

    def apply(self, args: Sequence[str]) -> int:
        backend = self.initialized()
        state = backend.read()
        plan_file = next((a for a in args if not a.startswith("-")), None)
        if plan_file:
            saved = json.loads(Path(plan_file).read_text())
            if (saved["lineage"], saved["serial"]) != (state["lineage"], state["serial"]):
                raise RefusedError(
                    "Saved plan is stale: the given plan file can no longer be applied because the state was "
                    "changed by another operation after the plan was created."
                )
            self.config = saved["config"]
            if saved["refresh_only"]:
                print("Apply complete! Resources: 0 added, 0 changed, 0 destroyed.")
                return 0
        elif "-auto-approve" not in args:
            raise RefusedError("apply without a saved plan needs -auto-approve here (no one can answer the prompt)")
        stack, session = self.stack(state)
        stack.plan()
        planned = dict(stack.actions)
        stack.applying = True
        effects = Effects(stack, session, self.faults)
        new_state = {
            **state,
            "lineage": state["lineage"] or str(uuid.uuid4()),
            "serial": state["serial"] + 1,
            "resources": dict(state["resources"]),
        }
        done: set[str] = set()

        def apply_one(address: str) -> None:
            """Dependencies first, as Terraform walks its graph."""
            if address in done:
                return
            done.add(address)
            action = planned[address]
            if action == ["delete"]:
                new_state["resources"].pop(address, None)
                return
            for dependency in stack.dependencies(address):
                apply_one(dependency)
            if action == ["no-op"]:
                return
            stack.desired.pop(address, None)
            stack.actions.pop(address, None)
            stack.plan_resource(address)
            stack.actions[address] = action
            body = stack.desired[address]
            try:
                assigned = effects.apply(address, action, body)
            except RefusedError as refusal:
                if isinstance(refusal, TaintedError):
                    # Created, but never became healthy: Terraform keeps it, tainted, and replaces it next time.
                    new_state["resources"][address] = {
                        "config": body,
                        "generation": stack.generation[address],
                        "computed": self.computed_attributes(stack, address),
                        "tainted": True,
                    }
                backend.write(new_state)
                raise RefusedError(f"{refusal}\n  with {address}") from None
            refreshed = assigned.pop(REFRESHED, {})
            new_state["resources"][address] = {
                # What the next plan compares the configuration with: what AWS has after the apply.
                "config": {**body, **refreshed},
                "generation": stack.generation[address],
                "computed": {**self.computed_attributes(stack, address), **assigned},
            }
            stack.state = {**stack.state, "resources": new_state["resources"]}
            stack.actions[address] = ["no-op"]

        for address in planned:
            apply_one(address)
        final, _ = self.stack(new_state)
        final.applying = True
        final.plan()
        new_state["outputs"] = {
            name: {"value": final.resolve(body.get("value")), "sensitive": bool(body.get("sensitive"))}
            for name, body in (self.config.get("output") or {}).items()
        }
        backend.write(new_state)
        counts = {kind: sum(1 for a in planned.values() if a == wanted) for kind, wanted in PLAN_WORDS.items()}
        replaced = sum(1 for a in planned.values() if len(a) == 2)
        print(
            f"Apply complete! Resources: {counts['add'] + replaced} added, {counts['change']} changed, "
            f"{counts['destroy'] + replaced} destroyed."
        )
        return 0

    @staticmethod
    def computed_attributes(stack: Stack, address: str) -> dict[str, Any]:
        return {
            a: stack.computed(address, a)
            for a in ("id", "arn", "dns_name", "domain_name", "repository_url", "arn_suffix")
        }

    def output(self, args: Sequence[str]) -> int:
        state = self.initialized().read()
        fault = self.faults / f"output-{self.name}"
        if fault.exists():
            fault.unlink()
            raise RefusedError(
                f"Failed to load state of {self.name}: RequestError: send request failed: connection reset by peer "
                "(a fault the rehearsal injected)"
            )
        if args and args[0] == "-raw":
            name = args[1] if len(args) > 1 else ""
            if name not in state["outputs"]:
                raise RefusedError(f'Output "{name}" not found: the state has no output value named "{name}"')
            value = state["outputs"][name]["value"]
            if not isinstance(value, (str, int, float, bool)):
                raise RefusedError(f'Unsupported value for raw output: output "{name}" is not a string, number or bool')
            print(value if not isinstance(value, bool) else str(value).lower(), end="")
            return 0
        print(
            json.dumps(
                {
                    n: {"sensitive": o["sensitive"], "type": "string", "value": o["value"]}
                    for n, o in state["outputs"].items()
                }
            )
        )
        return 0

    def state(self, args: Sequence[str]) -> int:
        """`terraform state list`: every resource address in the stack's state, one a line (none before its
        first apply); data sources are not kept in this fake's state, so they are not listed."""
        if list(args[:1]) != ["list"]:
            raise RefusedError(f"the rehearsal's terraform does not model `terraform state {' '.join(args)}`")
        for address in sorted(self.initialized().read()["resources"]):
            print(address)
        return 0


PLAN_WORDS = {"add": ["create"], "change": ["update"], "destroy": ["delete"]}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("version", "-version", "--version"):
        print(f"Terraform v{VERSION}\non linux_amd64")
        return 0
    world_file = Path(os.environ[WORLD_FILE_VARIABLE])
    world = World.load(world_file)
    try:
        terraform = Terraform(Path.cwd(), world, world_file.parent / "faults")
        command = {
            "init": terraform.init,
            "plan": terraform.plan,
            "show": terraform.show,
            "apply": terraform.apply,
            "output": terraform.output,
            "state": terraform.state,
        }.get(args[0])
        if command is None:
            raise RefusedError(f"the rehearsal's terraform does not model `terraform {args[0]}`")
        return command(args[1:])
    except RefusedError as refusal:
        print(f"\nError: {refusal}\n", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
