"""The stand-in's `aws_iam_policy_document` renders the JSON the real provider renders.

The expected documents are the real provider's own acceptance tests: hashicorp/terraform-provider-aws
`internal/service/iam/policy_document_data_source_test.go` (`testAccPolicyDocumentDataSourceConfig_basic`
and `testAccPolicyDocumentExpectedJSON`, compared there character for character with TestCheckResourceAttr,
the minified form too; `..._singleConditionValue` and `..._multipleConditionKeys`, compared there as
equivalent JSON; the principals of `testAccPolicyDocumentSourceExpectedJSON`), with the partition `aws`.
The configurations are given as the engine hands them to the provider: every attribute present, unset ones
null, blocks as lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import terraform_engine
from tools.standin_provider import data_sources


def statement(**values: Any) -> dict[str, Any]:
    empty = dict.fromkeys(("sid", "effect", "actions", "not_actions", "resources", "not_resources"))
    return {**empty, "principals": [], "not_principals": [], "condition": [], **values}


def document(*statements: dict[str, Any], **values: Any) -> dict[str, Any]:
    empty = dict.fromkeys(
        ("id", "json", "minified_json", "override_json", "override_policy_documents", "policy_id", "source_json")
    )
    return {**empty, "source_policy_documents": None, "version": None, "statement": list(statements), **values}


def principal(kind: str, *identifiers: str) -> dict[str, Any]:
    return {"type": kind, "identifiers": list(identifiers)}


BASIC = document(
    statement(sid="1", actions=["s3:ListAllMyBuckets", "s3:GetBucketLocation"], resources=["arn:aws:s3:::*"]),
    statement(
        actions=["s3:ListBucket"],
        resources=["arn:aws:s3:::foo"],
        condition=[{"test": "StringLike", "variable": "s3:prefix", "values": ["home/", "", "home/&{aws:username}/"]}],
        not_principals=[principal("AWS", "arn:blahblah:example")],
    ),
    statement(
        actions=["s3:*"],
        resources=["arn:aws:s3:::foo/home/&{aws:username}", "arn:aws:s3:::foo/home/&{aws:username}/*"],
        principals=[principal("AWS", "arn:blahblah:example")],
    ),
    statement(effect="Deny", not_actions=["s3:*"], not_resources=["arn:aws:s3:::*"]),
    statement(effect="Allow", actions=["kinesis:*"], principals=[principal("AWS", "*")]),
    statement(effect="Allow", actions=["firehose:*"], principals=[principal("*", "*")]),
    policy_id="policy_id",
)

# testAccPolicyDocumentExpectedJSON() with acctest.Partition() = "aws", as the provider's test has it.
BASIC_JSON = """{
  "Version": "2012-10-17",
  "Id": "policy_id",
  "Statement": [
    {
      "Sid": "1",
      "Effect": "Allow",
      "Action": [
        "s3:ListAllMyBuckets",
        "s3:GetBucketLocation"
      ],
      "Resource": "arn:aws:s3:::*"
    },
    {
      "Effect": "Allow",
      "Action": "s3:ListBucket",
      "Resource": "arn:aws:s3:::foo",
      "NotPrincipal": {
        "AWS": "arn:blahblah:example"
      },
      "Condition": {
        "StringLike": {
          "s3:prefix": [
            "home/",
            "",
            "home/${aws:username}/"
          ]
        }
      }
    },
    {
      "Effect": "Allow",
      "Action": "s3:*",
      "Resource": [
        "arn:aws:s3:::foo/home/${aws:username}/*",
        "arn:aws:s3:::foo/home/${aws:username}"
      ],
      "Principal": {
        "AWS": "arn:blahblah:example"
      }
    },
    {
      "Effect": "Deny",
      "NotAction": "s3:*",
      "NotResource": "arn:aws:s3:::*"
    },
    {
      "Effect": "Allow",
      "Action": "kinesis:*",
      "Principal": {
        "AWS": "*"
      }
    },
    {
      "Effect": "Allow",
      "Action": "firehose:*",
      "Principal": "*"
    }
  ]
}"""


# testAccPolicyDocumentExpectedJSONMinified(), likewise.
BASIC_MINIFIED = (
    '{"Version":"2012-10-17","Id":"policy_id","Statement":[{"Sid":"1","Effect":"Allow","Action":'
    '["s3:ListAllMyBuckets","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::*"},{"Effect":"Allow",'
    '"Action":"s3:ListBucket","Resource":"arn:aws:s3:::foo","NotPrincipal":{"AWS":"arn:blahblah:example"},'
    '"Condition":{"StringLike":{"s3:prefix":["home/","","home/${aws:username}/"]}}},{"Effect":"Allow",'
    '"Action":"s3:*","Resource":["arn:aws:s3:::foo/home/${aws:username}/*","arn:aws:s3:::foo/home/${aws:username}"],'
    '"Principal":{"AWS":"arn:blahblah:example"}},{"Effect":"Deny","NotAction":"s3:*","NotResource":"arn:aws:s3:::*"},'
    '{"Effect":"Allow","Action":"kinesis:*","Principal":{"AWS":"*"}},{"Effect":"Allow","Action":"firehose:*",'
    '"Principal":"*"}]}'
)


@pytest.mark.req("R4.3")
def test_the_basic_document_is_the_providers_text_character_for_character() -> None:
    rendered = data_sources.render_policy(BASIC)
    assert rendered["json"] == BASIC_JSON
    assert rendered["minified_json"] == BASIC_MINIFIED


@pytest.mark.req("R4.3")
def test_single_condition_values_are_strings_and_condition_keys_gather_under_their_test() -> None:
    single = document(
        statement(
            effect="Deny",
            principals=[principal("AWS", "*")],
            actions=["elasticfilesystem:*"],
            resources=["*"],
            condition=[{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}],
        )
    )
    assert json.loads(data_sources.render_policy(single)["json"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "elasticfilesystem:*",
                "Resource": "*",
                "Principal": {"AWS": "*"},
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    keys = document(
        statement(
            sid="AWSCloudTrailWrite20150319",
            effect="Allow",
            principals=[principal("Service", "cloudtrail.amazonaws.com")],
            actions=["s3:PutObject"],
            resources=["*"],
            condition=[
                {"test": "StringEquals", "variable": "s3:x-amz-acl", "values": ["bucket-owner-full-control"]},
                {"test": "StringEquals", "variable": "aws:SourceArn", "values": ["some-other-value"]},
            ],
        )
    )
    rendered = data_sources.render_policy(keys)["json"]
    assert json.loads(rendered)["Statement"][0]["Condition"] == {
        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": "some-other-value"}
    }
    # Go's encoding/json writes a map's keys sorted: the text has aws:SourceArn first.
    assert rendered.index('"aws:SourceArn"') < rendered.index('"s3:x-amz-acl"')


@pytest.mark.req("R4.3")
def test_several_identifiers_of_a_principal_are_sorted_in_reverse() -> None:
    several = document(
        statement(
            actions=["s3:*"],
            resources=["*"],
            principals=[principal("AWS", "arn:blahblah:example", "arn:blahblahblah:example")],
        )
    )
    principal_text = json.loads(data_sources.render_policy(several)["json"])["Statement"][0]["Principal"]
    assert principal_text == {"AWS": ["arn:blahblahblah:example", "arn:blahblah:example"]}


@pytest.mark.req("R10.3")
def test_what_the_standin_does_not_model_is_refused_in_one_line() -> None:
    merged = document(statement(actions=["s3:*"]), source_policy_documents=['{"Version": "2012-10-17"}'])
    with pytest.raises(data_sources.DataSourceError, match="does not merge source_policy_documents"):
        data_sources.render_policy(merged)
    twice = document(statement(sid="Same", actions=["s3:*"]), statement(sid="Same", actions=["ec2:*"]))
    with pytest.raises(data_sources.DataSourceError, match=r"duplicate Sid \(Same\)"):
        data_sources.render_policy(twice)


@pytest.mark.req("R4.3")
def test_the_engine_reads_the_document_through_the_standin(standin: Path, tmp_path: Path) -> None:
    """The same document as the engine plans it: its configuration (sets included) goes through the engine
    and tfplugin6, and the plan's output is the provider's text."""
    blocks = [{key: value for key, value in block.items() if value not in (None, [])} for block in BASIC["statement"]]
    configuration = {
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "6.69.1"}}},
        "provider": {"aws": [{"region": "eu-west-1"}]},
        "data": {"aws_iam_policy_document": {"basic": {"policy_id": "policy_id", "statement": blocks}}},
        "output": {"json": {"value": "${data.aws_iam_policy_document.basic.json}"}},
    }
    shown = terraform_engine.planned_changes(tmp_path, configuration, standin)
    assert shown["planned_values"]["outputs"]["json"]["value"] == BASIC_JSON


@pytest.mark.req("R10.3")
def test_a_data_source_the_standin_cannot_fill_is_an_error_not_a_null() -> None:
    block = {"attributes": {"arn": {"computed": True, "type": "string"}, "id": {"computed": True, "type": "string"}}}
    account = data_sources.Account({"region": "eu-west-1", "allowed_account_ids": ["111111111111"]})
    state = data_sources.read("aws_elb_service_account", block, {"arn": None, "id": None}, account)
    assert state == {"arn": "arn:aws:iam::156460612806:root", "id": "156460612806"}
    unfilled = {"attributes": {**block["attributes"], "owner": {"computed": True, "type": "string"}}}
    with pytest.raises(data_sources.DataSourceError, match="fills no owner"):
        data_sources.read("aws_elb_service_account", unfilled, {}, account)
    with pytest.raises(data_sources.DataSourceError, match="reads no aws_vpc: add a reader"):
        data_sources.read("aws_vpc", block, {}, account)
    with pytest.raises(data_sources.DataSourceError, match="name exactly one account"):
        data_sources.read("aws_secretsmanager_secret", {}, {"name": "x"}, data_sources.Account({"region": "eu-west-1"}))
