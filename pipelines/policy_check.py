"""Refuse synthesized stacks that would make Terraform run or fetch what the repository does not allow.

    python -m pipelines.policy_check --cdktf-out DIR [--stage S]

Reads every stack of `DIR/manifest.json` (with `--stage S`, only the stack `S`) and its `cdk.tf.json`,
the one file the pipeline's Terraform is given (pipelines/terraform_workdir.py), and prints one line per
finding, naming the stack, the address and the rule:

- `stray-file`: anything in a stack's directory besides `cdk.tf.json` (a `terraform.d/plugins` mirror, a
  module folder, a `.tf` file, a lock file, `.terraform/`): Terraform would load it;
- `block`: a top-level block outside `TOP_LEVEL_BLOCKS` (`module`, `check`, `ephemeral`, `import`, ...):
  the stacks are resources, data sources and outputs of the allowed provider, nothing that loads more
  configuration or runs while Terraform plans;

- `provisioner`: a `provisioner` block (local-exec, remote-exec, file) on any resource;
- `command-resource`: a `terraform_data` or `null_resource` resource (they exist to run provisioners);
- `data-source`: an `external` or `http` data source (a command, or a request, run by plan itself);
- `provider`: a resource, data source or provider configuration of a provider outside `ALLOWED_PROVIDERS`;
- `required-providers`: a `required_providers` entry whose source is outside `ALLOWED_PROVIDERS`;
- `backend`: a backend other than `s3` (a bootstrap stack may also be `local`, before its state migrates);
- `credentials`: an AWS provider or S3 backend setting outside `PROVIDER_SETTINGS`/`BACKEND_SETTINGS`
  (a profile, keys, a credentials file, an endpoint): the pipeline chooses the credentials Terraform runs
  with (`pipeline_credentials`), never the commit; the `assume_role` the stacks name for laptop use is
  removed before `terraform init` in favour of the action's own role.

Exit status: 0 when nothing is found, 3 when something is (plan must not run), 2 for bad input (no such
directory, no manifest, a stack that is not JSON). `enforce` does the same for `terraform_stage plan`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import CommandError
from pipelines.terraform_workdir import STACK_FILE

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3

# Provider sources (normalized: registry host, namespace, type, lower case) the stacks may use; nothing else.
ALLOWED_PROVIDERS: Mapping[str, str] = {
    # Every resource and data source of every stack; its version is pinned, and its binary checked against
    # each stack's .terraform.lock.hcl.
    "registry.terraform.io/hashicorp/aws": "the AWS provider",
}
BUILTIN_PROVIDER = "terraform.io/builtin/terraform"
DEFAULT_REGISTRY = "registry.terraform.io"
COMMAND_RESOURCES = frozenset({"terraform_data", "null_resource"})
FORBIDDEN_DATA_SOURCES = frozenset({"external", "http"})
# What a synthesized stack holds at its top level ("//" is cdktn's metadata); anything else is refused.
TOP_LEVEL_BLOCKS = frozenset({"//", "terraform", "provider", "resource", "data", "output", "variable"})
STACK_BLOCKS = sorted(TOP_LEVEL_BLOCKS - {"//"})
STATE_BACKEND = "s3"
# What the synthesized AWS provider and S3 backend may set: where, which account, which tags. Anything else
# (profile, access keys, shared files, endpoints, a web identity token) would pick credentials or a target.
PROVIDER_SETTINGS = frozenset({"alias", "region", "allowed_account_ids", "default_tags", "assume_role"})
BACKEND_SETTINGS = frozenset(
    {"bucket", "key", "region", "dynamodb_table", "encrypt", "use_lockfile", "allowed_account_ids", "assume_role"}
)
# Removed before `terraform init` by `pipeline_credentials`: the action's own role applies, not the stack's choice.
STACK_CHOSEN_ROLE = "assume_role"
BOOTSTRAP_PREFIX = "bootstrap-"
BOOTSTRAP_BACKENDS = frozenset({"s3", "local"})


class PolicyInputError(CommandError):
    """The synthesized output cannot be read, so nothing can be said about it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_status=EXIT_BAD_INPUT)


@dataclass(frozen=True)
class Finding:
    stack: str
    address: str
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stack}: {self.address}: {self.rule}: {self.reason}"


def normalize_source(source: str) -> str:
    """`hashicorp/aws`, `registry.terraform.io/HashiCorp/aws` and `aws` all name one provider."""
    parts = source.strip().lower().split("/")
    if len(parts) == 1:
        parts = ["hashicorp", *parts]
    if len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return "/".join(parts)


def mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyInputError(f"{where} is not an object: synthesize again with `make synth`")
    return value


def blocks(value: Any, where: str) -> list[dict[str, Any]]:
    """A block Terraform JSON allows as one object or as a list of objects."""
    items = value if isinstance(value, list) else [value]
    return [mapping(item, where) for item in items]


def provider_sources(document: Mapping[str, Any], where: str) -> dict[str, str]:
    """Local provider name -> normalized source, from `terraform.required_providers`."""
    sources: dict[str, str] = {}
    for terraform in blocks(document.get("terraform", {}), f"{where}: terraform"):
        for local, requirement in mapping(terraform.get("required_providers"), f"{where}: required_providers").items():
            source = requirement.get("source") if isinstance(requirement, dict) else None
            sources[local] = normalize_source(source if isinstance(source, str) else local)
    return sources


def source_of(local: str, sources: Mapping[str, str]) -> str:
    """The provider a local name means: as required, else Terraform's default (`hashicorp/<name>`)."""
    if local in sources:
        return sources[local]
    return BUILTIN_PROVIDER if local == "terraform" else normalize_source(local)


def local_provider(kind: str, body: Mapping[str, Any]) -> str:
    """The local provider name of a resource or data source: its `provider` argument, else its type's prefix."""
    configured = body.get("provider")
    if isinstance(configured, str) and configured:
        return configured.removeprefix("${").removesuffix("}").split(".")[0]
    return kind.split("_")[0]


def check_document(stack: str, document: Mapping[str, Any], where: str) -> Iterator[Finding]:
    for block in sorted(set(document) - TOP_LEVEL_BLOCKS):
        yield Finding(stack, block, "block", f"a top-level {block} block: a stack holds only {', '.join(STACK_BLOCKS)}")
    sources = provider_sources(document, where)
    for local, source in sources.items():
        if source not in ALLOWED_PROVIDERS:
            yield Finding(
                stack,
                f"terraform.required_providers.{local}",
                "required-providers",
                f"source {source} is not an allowed provider ({', '.join(ALLOWED_PROVIDERS)})",
            )
    for local, configurations in mapping(document.get("provider"), f"{where}: provider").items():
        source = source_of(local, sources)
        if source not in ALLOWED_PROVIDERS:
            yield Finding(stack, f"provider.{local}", "provider", f"configures {source}, not an allowed provider")
            continue
        for configuration in blocks(configurations, f"{where}: provider.{local}"):
            for setting in sorted(set(configuration) - PROVIDER_SETTINGS):
                yield Finding(stack, f"provider.{local}.{setting}", "credentials", "the pipeline chooses credentials")
    for section, prefix in (("resource", ""), ("data", "data.")):
        for kind, instances in mapping(document.get(section), f"{where}: {section}").items():
            for name, body in mapping(instances, f"{where}: {section}.{kind}").items():
                yield from check_block(stack, f"{prefix}{kind}.{name}", section, kind, body, sources, where)


def check_block(
    stack: str,
    address: str,
    section: str,
    kind: str,
    body: Any,
    sources: Mapping[str, str],
    where: str,
) -> Iterator[Finding]:
    items = blocks(body, f"{where}: {address}")
    if section == "resource":
        for item in items:
            for provisioner in blocks(item.get("provisioner", []), f"{where}: {address}.provisioner"):
                for provisioner_type in provisioner:
                    yield Finding(
                        stack,
                        address,
                        "provisioner",
                        f"a {provisioner_type} provisioner runs commands or copies files that no plan shows",
                    )
        if kind in COMMAND_RESOURCES:
            yield Finding(stack, address, "command-resource", f"{kind} exists to run commands")
            return
    elif kind in FORBIDDEN_DATA_SOURCES:
        yield Finding(stack, address, "data-source", f"an {kind} data source runs while Terraform plans")
        return
    for item in items:
        source = source_of(local_provider(kind, item), sources)
        if source not in ALLOWED_PROVIDERS:
            yield Finding(stack, address, "provider", f"belongs to {source}, not an allowed provider")
            return


def check_backend(stack: str, documents: Sequence[tuple[str, Mapping[str, Any]]]) -> Iterator[Finding]:
    backends: list[str] = []
    for where, document in documents:
        for terraform in blocks(document.get("terraform", {}), f"{where}: terraform"):
            configured = mapping(terraform.get("backend"), f"{where}: terraform.backend")
            backends += list(configured)
            s3 = mapping(configured.get(STATE_BACKEND), f"{where}: terraform.backend.s3")
            for setting in sorted(set(s3) - BACKEND_SETTINGS):
                yield Finding(
                    stack, f"terraform.backend.s3.{setting}", "credentials", "the pipeline chooses credentials"
                )
            if "cloud" in terraform:
                backends.append("cloud")
    allowed = BOOTSTRAP_BACKENDS if stack.startswith(BOOTSTRAP_PREFIX) else frozenset({STATE_BACKEND})
    expected = " or ".join(sorted(allowed))
    if not backends:
        yield Finding(stack, "terraform.backend", "backend", f"none (Terraform's local state): want {expected}")
    for backend in backends:
        if backend not in allowed:
            yield Finding(stack, f"terraform.backend.{backend}", "backend", f"{backend} is not {expected}")


def pipeline_credentials(stack_dir: Path) -> None:
    """Remove the role the stack names for its AWS provider and S3 backend from `stack_dir`'s JSON, so that
    Terraform runs as the action's own credentials (AWS_PROFILE selects the stage's plan or deploy role):
    a saved plan keeps its provider configuration, so a role named there would follow the plan into Apply,
    and Plan's read-only role could never apply it, nor Apply's role plan. Run before `terraform init`."""
    for path in sorted(stack_dir.glob("*.tf.json")):
        document = read_json(path)
        changed = False
        for configurations in mapping(document.get("provider"), str(path)).values():
            for configuration in blocks(configurations, str(path)):
                changed |= configuration.pop(STACK_CHOSEN_ROLE, None) is not None
        for terraform in blocks(document.get("terraform", {}), str(path)):
            s3 = mapping(mapping(terraform.get("backend"), str(path)).get(STATE_BACKEND), str(path))
            changed |= s3.pop(STACK_CHOSEN_ROLE, None) is not None
        if changed:
            path.write_text(json.dumps(document, indent=2))


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise PolicyInputError(f"cannot read {path} ({error.strerror}): synthesize again with `make synth`") from None
    except json.JSONDecodeError as error:
        raise PolicyInputError(f"{path} is not JSON ({error.msg}): synthesize again with `make synth`") from None
    return mapping(document, str(path))


def stack_names(cdktf_out: Path, stage: str | None) -> list[str]:
    if not cdktf_out.is_dir():
        raise PolicyInputError(f"{cdktf_out} is not a directory: synthesize first with `make synth`")
    manifest = read_json(cdktf_out / "manifest.json")
    names = set(mapping(manifest.get("stacks"), f"{cdktf_out}/manifest.json: stacks"))
    # A stack directory the manifest forgot is checked too: whatever was synthesized, not just what is listed.
    names |= {path.parent.name for path in (cdktf_out / "stacks").glob("*/cdk.tf.json")}
    if stage is not None:
        names = {name for name in names if name == stage}
    if not names:
        which = f"stack {stage!r}" if stage is not None else "stacks"
        raise PolicyInputError(f"no {which} in {cdktf_out}: is --stage right, and is it synthesized?")
    return sorted(names)


def check_stack(cdktf_out: Path, stack: str) -> list[Finding]:
    directory = cdktf_out / "stacks" / stack
    path = directory / STACK_FILE
    if not path.is_file():
        raise PolicyInputError(f"{path} does not exist: synthesize again with `make synth`")
    findings = [
        Finding(stack, other.name, "stray-file", f"only {STACK_FILE} belongs here, and Terraform would load this")
        for other in sorted(directory.iterdir())
        if other.name != STACK_FILE
    ]
    document = read_json(path)
    findings += check_document(stack, document, str(path))
    findings += check_backend(stack, [(str(path), document)])
    return findings


def check(cdktf_out: Path, stage: str | None = None) -> tuple[list[str], list[Finding]]:
    """The stacks checked and what was found in them; `PolicyInputError` when they cannot be read."""
    stacks = stack_names(cdktf_out, stage)
    return stacks, [finding for stack in stacks for finding in check_stack(cdktf_out, stack)]


def enforce(
    cdktf_out: Path,
    stage: str | None,
    out: Callable[[str], None] = print,
    error: Callable[[str, int], Exception] = CommandError,
) -> None:
    """For `terraform_stage plan`: print each finding through `out`, then raise `error(message, exit status)`."""
    try:
        stacks, findings = check(cdktf_out, stage)
    except PolicyInputError as bad:
        raise error(str(bad), bad.exit_status) from None
    for finding in findings:
        out(f"policy: {finding}")
    if findings:
        raise error(refusal(findings, stacks), EXIT_REFUSED)


def refusal(findings: Sequence[Finding], stacks: Sequence[str]) -> str:
    affected = sorted({finding.stack for finding in findings})
    return (
        f"refusing to run Terraform: {len(findings)} policy finding(s) in {', '.join(affected)} "
        f"(of {len(stacks)} stack(s) checked, each listed above): see pipelines/policy_check.py for the rules"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.policy_check", description=__doc__.splitlines()[0])
    parser.add_argument("--cdktf-out", type=Path, required=True, help="the synthesized cdktf.out directory")
    parser.add_argument("--stage", help="check only the stage's stack <stage> (default: every stack)")
    args = parser.parse_args(argv)
    try:
        stacks, findings = check(args.cdktf_out, args.stage)
    except PolicyInputError as bad:
        print(f"error: {bad}", file=sys.stderr)
        return bad.exit_status
    for finding in findings:
        print(f"policy: {finding}", file=sys.stderr)
    if findings:
        print(f"error: {refusal(findings, stacks)}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"policy check: {len(stacks)} stack(s) clean: {', '.join(stacks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
