"""pipelines/policy_check.py: each rule trips on a minimal stack and not on its clean twin; the real synth is clean."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import CommandError
from pipelines.policy_check import (
    ALLOWED_PROVIDERS,
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    check,
    enforce,
    local_provider,
    main,
    pipeline_credentials,
    provider_sources,
    source_of,
)
from tests.infra import conftest as infra

Stack = dict[str, Any]
# A stage's one workload stack is named after the stage (stacks/workload.py).
STACK = "beta"

# The shape cdktn writes, cut down: the AWS provider, an S3 backend.
CLEAN: Stack = {
    "terraform": {
        "required_providers": {"aws": {"source": "hashicorp/aws", "version": "6.69.1"}},
        "backend": {"s3": {"bucket": "canvalo-tfstate", "key": f"{STACK}/terraform.tfstate"}},
    },
    "provider": {"aws": [{"region": "eu-west-1"}, {"alias": "us_east_1", "region": "us-east-1"}]},
    "resource": {"aws_s3_bucket": {"logs": {"bucket": "logs"}}},
    "data": {
        "aws_iam_policy_document": {"logs": {"statement": []}},
    },
}


def write_out(root: Path, stacks: dict[str, Stack], extra_files: dict[str, str] | None = None) -> Path:
    """A cdktf.out directory: manifest.json and one stacks/<name>/cdk.tf.json per stack."""
    manifest = {"stacks": {name: {"synthesizedStackPath": f"stacks/{name}/cdk.tf.json"} for name in stacks}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, document in stacks.items():
        (root / "stacks" / name).mkdir(parents=True)
        (root / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    for relative, text in (extra_files or {}).items():
        (root / relative).write_text(text)
    return root


def stack_with(change: Callable[[Stack], None]) -> Stack:
    document = copy.deepcopy(CLEAN)
    change(document)
    return document


def add_resource(kind: str, name: str, body: dict[str, Any]) -> Callable[[Stack], None]:
    return lambda document: document["resource"].setdefault(kind, {}).update({name: body})


def add_data(kind: str, name: str, body: dict[str, Any]) -> Callable[[Stack], None]:
    return lambda document: document["data"].setdefault(kind, {}).update({name: body})


def set_key(path: tuple[str, ...], value: Any) -> Callable[[Stack], None]:
    def change(document: Stack) -> None:
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


def found(root: Path, stage: str | None = None) -> list[tuple[str, str, str]]:
    return [(f.stack, f.address, f.rule) for f in check(root, stage)[1]]


# (rule, a change that trips it, the address it names, a clean twin of that change)
RULES: list[tuple[str, Callable[[Stack], None], str, Callable[[Stack], None]]] = [
    (
        "provisioner",
        add_resource("aws_s3_bucket", "site", {"bucket": "s", "provisioner": [{"local-exec": {"command": "id"}}]}),
        "aws_s3_bucket.site",
        add_resource("aws_s3_bucket", "site", {"bucket": "s"}),
    ),
    (
        "provisioner",
        add_resource("aws_instance", "box", {"provisioner": [{"remote-exec": {"inline": ["id"]}}]}),
        "aws_instance.box",
        add_resource("aws_instance", "box", {"ami": "ami-1"}),
    ),
    (
        "provisioner",
        add_resource("aws_instance", "box", {"provisioner": {"file": {"source": "a", "destination": "/b"}}}),
        "aws_instance.box",
        add_resource("aws_instance", "box", {"ami": "ami-1", "lifecycle": {"prevent_destroy": True}}),
    ),
    (
        "command-resource",
        add_resource("terraform_data", "run", {"input": "x"}),
        "terraform_data.run",
        add_resource("aws_ssm_parameter", "run", {"name": "x"}),
    ),
    (
        "command-resource",
        add_resource("null_resource", "run", {"triggers": {"a": "b"}}),
        "null_resource.run",
        add_resource("aws_ssm_parameter", "run", {"name": "x"}),
    ),
    (
        "data-source",
        add_data("external", "ask", {"program": ["sh", "-c", "env"]}),
        "data.external.ask",
        add_data("aws_caller_identity", "ask", {}),
    ),
    (
        "data-source",
        add_data("http", "fetch", {"url": "https://example.com"}),
        "data.http.fetch",
        add_data("aws_region", "fetch", {}),
    ),
    (
        "provider",
        add_resource("random_id", "suffix", {"byte_length": 4}),
        "random_id.suffix",
        add_resource("aws_s3_bucket", "suffix", {"bucket": "b", "provider": "aws.us_east_1"}),
    ),
    (
        "provider",
        add_data("tls_certificate", "site", {"url": "https://example.com"}),
        "data.tls_certificate.site",
        add_data("aws_acm_certificate", "site", {"domain": "example.com", "provider": "${aws.us_east_1}"}),
    ),
    (
        "provider",
        add_resource("aws_s3_bucket", "other", {"bucket": "b", "provider": "evil.aws"}),
        "aws_s3_bucket.other",
        add_resource("aws_s3_bucket", "other", {"bucket": "b", "provider": "aws"}),
    ),
    (
        "provider",
        set_key(("provider", "local"), [{}]),
        "provider.local",
        set_key(("provider", "aws"), {"region": "eu-west-1"}),
    ),
    (
        "required-providers",
        set_key(("terraform", "required_providers", "random"), {"source": "hashicorp/random"}),
        "terraform.required_providers.random",
        set_key(("terraform", "required_providers", "aws"), "6.69.1"),
    ),
    # A module loads configuration this check never reads, a local one included (it ships in the artifact).
    (
        "block",
        set_key(("module", "vpc"), {"source": "./modules/vpc"}),
        "module",
        set_key(("resource", "aws_vpc", "vpc"), {"cidr_block": "10.0.0.0/16"}),
    ),
    # A data source scoped to a check block runs while Terraform plans, outside `data`.
    (
        "block",
        set_key(("check", "health"), {"data": {"external": {"probe": {"program": ["sh", "-c", "id"]}}}}),
        "check",
        set_key(("data", "aws_iam_policy_document", "health"), {"statement": []}),
    ),
    (
        "block",
        set_key(("ephemeral", "aws_secretsmanager_secret_version"), {"s": {"secret_id": "x"}}),
        "ephemeral",
        set_key(("data", "aws_secretsmanager_secret", "s"), {"name": "x"}),
    ),
    (
        "block",
        set_key(("import",), [{"to": "aws_s3_bucket.logs", "id": "someone-elses-bucket"}]),
        "import",
        set_key(("output", "logs"), {"value": "${aws_s3_bucket.logs.bucket}"}),
    ),
    (
        "backend",
        set_key(("terraform", "backend"), {"local": {"path": "terraform.tfstate"}}),
        "terraform.backend.local",
        set_key(("terraform", "backend"), {"s3": {"bucket": "other-bucket"}}),
    ),
    (
        "backend",
        set_key(("terraform", "backend"), {}),
        "terraform.backend",
        set_key(("terraform", "backend"), {"s3": {}}),
    ),
    (
        "backend",
        set_key(("terraform", "cloud"), {"organization": "elsewhere"}),
        "terraform.backend.cloud",
        set_key(("terraform", "backend", "s3", "encrypt"), True),
    ),
    # The commit may not choose the credentials Terraform runs with: the action's role does.
    (
        "credentials",
        set_key(("provider", "aws"), [{"region": "eu-west-1", "profile": "someone-elses"}]),
        "provider.aws.profile",
        set_key(("provider", "aws"), [{"region": "eu-west-1", "allowed_account_ids": ["1"]}]),
    ),
    (
        "credentials",
        set_key(("provider", "aws"), [{"region": "eu-west-1", "endpoints": [{"sts": "https://example.com"}]}]),
        "provider.aws.endpoints",
        set_key(("provider", "aws"), [{"region": "eu-west-1", "default_tags": [{"tags": {"a": "b"}}]}]),
    ),
    (
        # A stage is one state: reading another state's outputs is another provider (Terraform's built-in one).
        "provider",
        set_key(("data", "terraform_remote_state"), {"other": {"backend": "s3", "config": {"bucket": "b"}}}),
        "data.terraform_remote_state.other",
        set_key(("data", "aws_iam_policy_document", "other"), {"statement": []}),
    ),
    (
        "credentials",
        set_key(("terraform", "backend", "s3", "shared_credentials_files"), ["/tmp/keys"]),
        "terraform.backend.s3.shared_credentials_files",
        set_key(("terraform", "backend", "s3", "use_lockfile"), True),
    ),
]


@pytest.mark.parametrize(("rule", "trip", "address", "twin"), RULES, ids=[f"{r[0]}-{r[2]}" for r in RULES])
def test_each_rule_refuses_its_minimal_stack_and_not_its_clean_twin(
    tmp_path: Path, rule: str, trip: Callable[[Stack], None], address: str, twin: Callable[[Stack], None]
) -> None:
    assert found(write_out(tmp_path / "trips", {STACK: stack_with(trip)})) == [(STACK, address, rule)]
    assert found(write_out(tmp_path / "clean", {STACK: stack_with(twin)})) == []


def test_another_source_under_the_aws_name_refuses_every_block_that_uses_it(tmp_path: Path) -> None:
    impostor = set_key(("terraform", "required_providers", "aws"), {"source": "evilcorp/aws", "version": "6.69.1"})
    assert found(write_out(tmp_path / "impostor", {STACK: stack_with(impostor)})) == [
        (STACK, "terraform.required_providers.aws", "required-providers"),
        (STACK, "provider.aws", "provider"),
        (STACK, "aws_s3_bucket.logs", "provider"),
        (STACK, "data.aws_iam_policy_document.logs", "provider"),
    ]
    spelled = set_key(("terraform", "required_providers", "aws"), {"source": "registry.terraform.io/HashiCorp/aws"})
    assert found(write_out(tmp_path / "spelled", {STACK: stack_with(spelled)})) == []


def test_a_bootstrap_stack_may_keep_local_state_but_no_other_backend(tmp_path: Path) -> None:
    local = stack_with(set_key(("terraform", "backend"), {"local": {"path": "terraform.tfstate"}}))
    assert found(write_out(tmp_path / "local", {"bootstrap-beta": local, STACK: CLEAN})) == []
    remote = stack_with(set_key(("terraform", "backend"), {"http": {"address": "https://example.com"}}))
    refused = write_out(tmp_path / "http", {"bootstrap-beta": remote})
    assert found(refused) == [("bootstrap-beta", "terraform.backend.http", "backend")]


def test_anything_beside_the_synthesized_json_in_a_stack_directory_is_refused(tmp_path: Path) -> None:
    """Terraform would load each: HCL, an override file, an implied provider mirror, a lock file, an
    initialized `.terraform/`. The Build artifact's stack folder holds cdk.tf.json and nothing else."""
    root = write_out(
        tmp_path,
        {STACK: CLEAN},
        {
            f"stacks/{STACK}/main.tf": 'resource "null_resource" "x" {}\n',
            f"stacks/{STACK}/cdk_override.tf.json": json.dumps({"resource": {"null_resource": {"x": {}}}}),
            f"stacks/{STACK}/.terraform.lock.hcl": "# a lock the commit chose\n",
        },
    )
    mirror = root / "stacks" / STACK / "terraform.d" / "plugins" / "registry.terraform.io" / "hashicorp" / "aws"
    mirror.mkdir(parents=True)
    (root / "stacks" / STACK / ".terraform").mkdir()
    assert found(root) == [
        (STACK, ".terraform", "stray-file"),
        (STACK, ".terraform.lock.hcl", "stray-file"),
        (STACK, "cdk_override.tf.json", "stray-file"),
        (STACK, "main.tf", "stray-file"),
        (STACK, "terraform.d", "stray-file"),
    ]


def test_a_stage_checks_its_own_stacks_and_nothing_else(tmp_path: Path) -> None:
    bad = stack_with(add_resource("null_resource", "run", {}))
    # `beta-network`: a name that only starts with the stage's is not the stage's stack (Terraform never runs it).
    stacks = {STACK: CLEAN, "gamma": bad, "bootstrap-beta": bad, "beta-network": bad}
    root = write_out(tmp_path, stacks)
    assert check(root, "beta") == (["beta"], [])
    assert found(root, "gamma") == [("gamma", "null_resource.run", "command-resource")]
    assert {stack for stack, _, _ in found(root)} == {"gamma", "bootstrap-beta", "beta-network"}
    # A stack directory the manifest does not list is still synthesized output: it is checked.
    (tmp_path / "manifest.json").write_text(json.dumps({"stacks": {}}))
    assert found(root, "gamma") == [("gamma", "null_resource.run", "command-resource")]


def test_main_prints_one_line_per_finding_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = stack_with(add_resource("null_resource", "run", {"provisioner": [{"local-exec": {"command": "id"}}]}))
    root = write_out(tmp_path, {STACK: bad, "bootstrap-beta": CLEAN})
    assert main(["--cdktf-out", str(root), "--stage", "beta"]) == EXIT_REFUSED
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        f"policy: {STACK}: null_resource.run: provisioner: a local-exec provisioner runs commands or copies files "
        "that no plan shows",
        f"policy: {STACK}: null_resource.run: command-resource: null_resource exists to run commands",
    ]
    assert len(lines) == 3 and lines[2].startswith("error: refusing to run Terraform: 2 policy finding(s) in ")


def test_main_exits_0_on_clean_stacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cdktf-out", str(write_out(tmp_path, {STACK: CLEAN}))]) == 0
    assert capsys.readouterr().out == f"policy check: 1 stack(s) clean: {STACK}\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "is not a directory"),
        (lambda root: write_out(root, {STACK: CLEAN}, {"manifest.json": "{"}), "manifest.json is not JSON"),
        (lambda root: write_out(root, {STACK: CLEAN}, {f"stacks/{STACK}/cdk.tf.json": "[]"}), "is not an object"),
        (lambda root: write_out(root, {STACK: stack_with(set_key(("resource",), []))}), "resource is not an object"),
        (lambda root: write_out(root, {}), "no stack 'beta' in"),
        (lambda root: write_out(root, {"beta-network": CLEAN, "bootstrap-beta": CLEAN}), "no stack 'beta' in"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path], message: str
) -> None:
    assert main(["--cdktf-out", str(make(tmp_path / "out")), "--stage", "beta"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]


class RefusedError(CommandError):
    """Stands for terraform_stage's StageError, which enforce raises in plan."""


def test_enforce_prints_the_findings_and_raises_the_callers_error(tmp_path: Path) -> None:
    printed: list[str] = []
    clean = write_out(tmp_path / "clean", {STACK: CLEAN})
    enforce(clean, "beta", printed.append, RefusedError)
    assert printed == []
    bad = write_out(tmp_path / "bad", {STACK: stack_with(add_data("external", "ask", {}))})
    with pytest.raises(RefusedError) as refused:
        enforce(bad, "beta", printed.append, RefusedError)
    assert refused.value.exit_status == EXIT_REFUSED
    assert printed == [
        f"policy: {STACK}: data.external.ask: data-source: an external data source runs while Terraform plans"
    ]
    with pytest.raises(RefusedError) as unreadable:
        enforce(tmp_path / "missing", "beta", printed.append, RefusedError)
    assert unreadable.value.exit_status == EXIT_BAD_INPUT


# The session's synthesis of the fixture configuration, shared with tests/infra (one synth per run).
synthesized = infra.synth_outdir


def test_every_synthesized_stack_passes_the_policy_check(synthesized: Path) -> None:
    stacks, findings = check(synthesized)
    assert [str(finding) for finding in findings] == []
    assert {stack.split("-")[0] for stack in stacks} >= {"bootstrap", "beta", "gamma", "prod", "pipeline"}
    for stage in ("beta", "gamma", "prod"):
        assert check(synthesized, stage) == ([stage], []), "a stage is its one workload stack"


def test_the_allowed_providers_are_exactly_those_the_stacks_use(synthesized: Path) -> None:
    """No allowance the stacks do not need: a provider added later is a reviewed change to ALLOWED_PROVIDERS."""
    used: set[str] = set()
    for path in (synthesized / "stacks").glob("*/cdk.tf.json"):
        document = json.loads(path.read_text())
        sources = provider_sources(document, str(path))
        used |= set(sources.values())
        for section in ("resource", "data"):
            for kind, instances in document.get(section, {}).items():
                used |= {source_of(local_provider(kind, body), sources) for body in instances.values()}
    assert used == set(ALLOWED_PROVIDERS)


@pytest.mark.req("R4.6")
def test_terraform_runs_as_the_actions_role_not_the_one_the_stack_names(tmp_path: Path) -> None:
    role = {"role_arn": "arn:aws:iam::333333333333:role/canvalo/canvalo-deploy", "session_name": "t"}

    def name_a_role(document: Stack) -> None:
        document["provider"]["aws"][0]["assume_role"] = [role]
        document["provider"]["aws"][1]["assume_role"] = [role]
        document["terraform"]["backend"]["s3"]["assume_role"] = role

    root = write_out(tmp_path, {STACK: stack_with(name_a_role)})
    assert found(root) == [], "naming the stage's deploy role is how the stacks are deployed from a laptop"
    pipeline_credentials(root / "stacks" / STACK)
    document = json.loads((root / "stacks" / STACK / "cdk.tf.json").read_text())
    assert document == CLEAN, "only the named roles are gone"
