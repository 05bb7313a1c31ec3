"""What the stand-in's data sources read: the configured values echoed, every computed one filled.

It replaces the real provider's ReadDataSource, which asks AWS. Only `aws_iam_policy_document` computes
what the real one does, because the plan summary's IAM analysis reads the JSON it renders: `render_policy`
follows hashicorp/terraform-provider-aws `internal/service/iam/policy_document_data_source.go` (read at
commit 04e9356d7f06) and its model `policy_model.go` (at 084fd7bc4c3c): Version 2012-10-17 unless set;
Sid, Effect, Action, NotAction, Resource, NotResource, Principal, NotPrincipal, Condition in that order;
one value a string, several sorted in reverse; `&{` read as `${`; Go's map order, sorted keys, for
principals and conditions. The other types return fixed values
that stand for an account's (each table entry says which); they show nothing of the account itself
(docs/fidelity.md).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

POLICY_VERSIONS = ("2012-10-17", "2008-10-17")


class DataSourceError(Exception):
    """The configuration asks for something the stand-in does not model; the message names it."""


# -- aws_iam_policy_document ------------------------------------------------------------------------


def _variables(values: Sequence[str], version: str) -> list[str]:
    """dataSourcePolicyDocumentReplaceVarsInList: `&{` is `${`, refused in a 2008-10-17 document."""
    for value in values:
        if version == "2008-10-17" and "&{" in value:
            raise DataSourceError(
                f"found &{{ sequence in ({value}), which is not supported in document version 2008-10-17"
            )
    return [value.replace("&{", "${") for value in values]


def _strings(values: Sequence[str], version: str, *, variables: bool) -> str | list[str]:
    """policyDecodeConfigStrings: one value as a string, several sorted in reverse (variables replaced in
    resources and principals, not in actions)."""
    out = _variables(values, version) if variables else list(values)
    return out[0] if len(out) == 1 else sorted(out, reverse=True)


def _principals(blocks: Sequence[Mapping[str, Any]], version: str) -> Any:
    """iamPolicyStatementPrincipalSet.MarshalJSON: `{"*": "*"}` alone is "*"; identifiers of one type gather.
    The real provider gathers several blocks of one type in its set's hash order; this keeps the engine's."""
    if len(blocks) == 1 and blocks[0]["type"] == "*" and list(blocks[0]["identifiers"]) == ["*"]:
        return "*"
    raw: dict[str, Any] = {}
    for block in blocks:
        identifiers = _strings(block["identifiers"], version, variables=True)
        existing = raw.get(block["type"])
        if isinstance(identifiers, list):
            raw[block["type"]] = ([] if existing is None else _as_list(existing)) + identifiers
        else:
            raw[block["type"]] = identifiers if existing is None else [*_as_list(existing), identifiers]
    return dict(sorted(raw.items()))


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _conditions(blocks: Sequence[Mapping[str, Any]], version: str) -> dict[str, Any]:
    """iamPolicyStatementConditionSet.MarshalJSON: test -> variable -> values in their order (a list in the
    schema), values of repeated test/variable pairs appended, one value a string, keys sorted."""
    raw: dict[str, dict[str, list[str]]] = {}
    for block in blocks:
        gathered = _variables(block["values"], version)
        raw.setdefault(block["test"], {}).setdefault(block["variable"], []).extend(gathered)
    return {
        test: {variable: items[0] if len(items) == 1 else items for variable, items in sorted(variables.items())}
        for test, variables in sorted(raw.items())
    }


_STATEMENT_LISTS = (
    ("actions", "Action", False),
    ("not_actions", "NotAction", False),
    ("resources", "Resource", True),
    ("not_resources", "NotResource", True),
)


def _statement(block: Mapping[str, Any], version: str, seen: set[str]) -> dict[str, Any]:
    statement: dict[str, Any] = {}
    sid = block.get("sid") or ""
    if sid:
        if sid in seen:
            raise DataSourceError(
                f"writing IAM Policy Document: duplicate Sid ({sid}). Remove the Sid or ensure the Sid is unique."
            )
        seen.add(sid)
        statement["Sid"] = sid
    statement["Effect"] = block.get("effect") or "Allow"  # the schema's Default
    for attribute, key, variables in _STATEMENT_LISTS:
        if block.get(attribute):
            statement[key] = _strings(block[attribute], version, variables=variables)
    for attribute, key in (("principals", "Principal"), ("not_principals", "NotPrincipal")):
        if block.get(attribute):
            statement[key] = _principals(block[attribute], version)
    if block.get("condition"):
        statement["Condition"] = _conditions(block["condition"], version)
    return statement


def _go_json(value: Any, *, indent: int | None) -> str:
    """encoding/json's text: MarshalIndent(v, "", "  ") or Marshal, with its HTML escaping of <, > and &."""
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    for character, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(character, escaped)
    return text


def render_policy(config: Mapping[str, Any]) -> dict[str, Any]:
    """`json`, `minified_json` and `id` of an `aws_iam_policy_document` with this configuration."""
    for merged in ("source_policy_documents", "override_policy_documents", "source_json", "override_json"):
        if config.get(merged):
            raise DataSourceError(
                f"the stand-in does not merge {merged} of aws_iam_policy_document: render the statements in the stack instead, or model the merge in tools/standin_provider/data_sources.py"
            )
    version = config.get("version") or POLICY_VERSIONS[0]
    if version not in POLICY_VERSIONS:
        raise DataSourceError(f"version {version!r} of aws_iam_policy_document is not one of {list(POLICY_VERSIONS)}")
    document: dict[str, Any] = {"Version": version}
    if config.get("policy_id"):
        document["Id"] = config["policy_id"]
    seen: set[str] = set()
    statements = [_statement(block, version, seen) for block in config.get("statement") or []]
    if statements:
        document["Statement"] = statements
    text = _go_json(document, indent=2)
    # create.StringHashcode: the CRC-32 of the indented JSON, as the provider sets the data source's id.
    return {"json": text, "minified_json": _go_json(document, indent=None), "id": str(zlib.crc32(text.encode()))}


# -- the other data sources: fixed values that stand for an account's --------------------------------


class Account:
    """What the provider block says of the account: `allowed_account_ids` stands for the caller's account
    (the pipeline's stacks name exactly one) and `region` for the region."""

    def __init__(self, provider_config: Mapping[str, Any]) -> None:
        self._accounts = list(provider_config.get("allowed_account_ids") or [])
        self.region = str(provider_config.get("region") or "")

    @property
    def account_id(self) -> str:
        if len(self._accounts) != 1:
            raise DataSourceError(
                "the stand-in reads the account id from the provider block's allowed_account_ids: name exactly one account there"
            )
        return str(self._accounts[0])


# The account Elastic Load Balancing delivers access logs from, by region (the AWS documentation's table:
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
ELB_ACCOUNTS = {"eu-west-1": "156460612806", "us-east-1": "127311923021"}


def _zone_prefix(region: str) -> str:
    """An AZ id's prefix as AWS writes them for the regions the stacks use (eu-west-1 -> euw1)."""
    area, direction, number = region.split("-")
    return f"{area}{direction[0]}{number}"


def _availability_zones(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    # Three zones a, b, c of the region: what an opted-in region of three zones lists.
    region = config.get("region") or account.region
    return {
        "id": region,
        "region": region,
        "names": [f"{region}{letter}" for letter in "abc"],
        "zone_ids": [f"{_zone_prefix(region)}-az{index}" for index in (1, 2, 3)],
        "group_names": [region],
    }


def _managed_prefix_list(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    # An AWS-managed list (owner "AWS"), as the CloudFront origin-facing list is: a pl-... id of AWS's
    # shape, not the region's real one, and no entries (the real list's CIDRs are AWS's to change).
    region = config.get("region") or account.region
    identifier = config.get("id") or "pl-4fa04526"
    return {
        "id": identifier,
        "region": region,
        "name": config.get("name") or "com.amazonaws.global.cloudfront.origin-facing",
        "arn": f"arn:aws:ec2:{region}:aws:prefix-list/{identifier}",
        "address_family": "IPv4",
        "max_entries": 55,
        "owner_id": "AWS",
        "version": 1,
        "entries": [],
        "tags": config.get("tags") or {},
    }


def _elb_service_account(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    region = config.get("region") or account.region
    if region not in ELB_ACCOUNTS:
        raise DataSourceError(
            f"the stand-in knows the ELB log delivery account of {sorted(ELB_ACCOUNTS)}, not {region}: add it to ELB_ACCOUNTS"
        )
    return {"id": ELB_ACCOUNTS[region], "region": region, "arn": f"arn:aws:iam::{ELB_ACCOUNTS[region]}:root"}


def _secretsmanager_secret(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    # The secret `make bootstrap` creates: in the stack's account and region, the six random characters
    # Secrets Manager appends to every ARN fixed, no policy, the AWS-managed key (kms_key_id empty).
    region = config.get("region") or account.region
    name = config.get("name") or str(config.get("arn") or "").rsplit(":", 1)[-1][:-7]
    arn = config.get("arn") or f"arn:aws:secretsmanager:{region}:{account.account_id}:secret:{name}-StNdIn"
    return {
        "id": arn,
        "arn": arn,
        "name": name,
        "region": region,
        "created_date": "2026-01-01T00:00:00Z",
        "last_changed_date": "2026-01-01T00:00:00Z",
        "description": "",
        "kms_key_id": "",
        "policy": "",
        "type": "",
        "tags": config.get("tags") or {},
    }


def _route53_zone(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    # A public hosted zone the account already holds for the domain (prod's zone is created outside the
    # stacks): a zone id of Route 53's shape and four awsdns name servers.
    zone_id = config.get("zone_id") or config.get("id") or "Z0STANDIN0000000000"
    servers = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk", "ns-3.awsdns-03.com", "ns-4.awsdns-04.net"]
    return {
        "id": zone_id,
        "zone_id": zone_id,
        "name": str(config.get("name") or "").rstrip("."),
        "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
        "caller_reference": "standin",
        "comment": "",
        "linked_service_description": "",
        "linked_service_principal": "",
        "name_servers": servers,
        "primary_name_server": servers[0],
        "resource_record_set_count": 2,
        "tags": config.get("tags") or {},
    }


def _policy_document(config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    return render_policy(config)


Reader = Callable[[Mapping[str, Any], Account], dict[str, Any]]
READERS: dict[str, Reader] = {
    "aws_availability_zones": _availability_zones,
    "aws_ec2_managed_prefix_list": _managed_prefix_list,
    "aws_elb_service_account": _elb_service_account,
    "aws_iam_policy_document": _policy_document,
    "aws_route53_zone": _route53_zone,
    "aws_secretsmanager_secret": _secretsmanager_secret,
}


def computed_attributes(block: Mapping[str, Any]) -> list[str]:
    return sorted(name for name, attribute in block.get("attributes", {}).items() if attribute.get("computed"))


def read(type_name: str, block: Mapping[str, Any], config: Mapping[str, Any], account: Account) -> dict[str, Any]:
    """The state of a data source: its configuration, every computed attribute the configuration leaves
    null filled from READERS; an attribute the reader does not fill is an error, not a silent null."""
    reader = READERS.get(type_name)
    if reader is None:
        raise DataSourceError(
            f"the stand-in reads no {type_name}: add a reader to READERS in tools/standin_provider/data_sources.py"
        )
    filled = reader(config, account)
    state = dict(config)
    for name in computed_attributes(block):
        if state.get(name) is None:
            if name not in filled:
                raise DataSourceError(f"the stand-in's reader of {type_name} fills no {name}")
            state[name] = filled[name]
    return state
