"""The stand-in AWS provider: a tfplugin6 server on the `tf` framework that serves a derived schema.

It replaces hashicorp/aws for the engine's schema work: `terraform init` installs it from a plugin directory,
`terraform validate` checks every stack against the schema it serves (unknown and missing arguments, types,
blocks versus attributes), and `terraform providers schema -json` prints that schema back. What it cannot
show: anything the real provider decides (its validators, plan modifiers, defaults, API calls); it
applies nothing yet; its data sources return the configuration with fixed computed values, and
`aws_iam_policy_document` renders its JSON as the real provider does (data_sources, docs/fidelity.md).
A later step can give `_Type.create/read/update/delete` a moto.
"""

from __future__ import annotations

import json
from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.utils import Diagnostics

from tools.standin_provider import data_sources

PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/aws"
_PREFIX = "aws_"
_NESTING = {"single": "SINGLE", "list": "LIST", "set": "SET", "map": "MAP", "group": "GROUP"}
_FLAGS = ("required", "optional", "computed")


def _cty(type_: Any) -> bytes:
    return json.dumps(type_, separators=(",", ":")).encode()


def _attribute_pb(name: str, attribute: dict[str, Any]) -> Any:
    flags = {flag: True for flag in _FLAGS if attribute.get(flag)}
    if "nested_type" in attribute:
        nested = attribute["nested_type"]
        object_pb = pb.Schema.Object(
            attributes=[_attribute_pb(key, value) for key, value in nested.get("attributes", {}).items()],
            nesting=getattr(pb.Schema.Object.NestingMode, _NESTING[nested["nesting_mode"]]),
        )
        return pb.Schema.Attribute(name=name, nested_type=object_pb, description_kind=pb.PLAIN, **flags)
    return pb.Schema.Attribute(name=name, type=_cty(attribute["type"]), description_kind=pb.PLAIN, **flags)


def block_pb(block: dict[str, Any]) -> Any:
    """A schema block as `providers schema -json` prints it, as tfplugin6's Schema.Block."""
    nested = [
        pb.Schema.NestedBlock(
            type_name=name,
            block=block_pb(value["block"]),
            nesting=getattr(pb.Schema.NestedBlock.NestingMode, _NESTING[value["nesting_mode"]]),
            min_items=value.get("min_items", 0),
            max_items=value.get("max_items", 0),
        )
        for name, value in block.get("block_types", {}).items()
    ]
    attributes = [_attribute_pb(name, value) for name, value in block.get("attributes", {}).items()]
    return pb.Schema.Block(attributes=attributes, block_types=nested, description_kind=pb.PLAIN)


class _PassThrough:
    """A value as the engine sent it (msgpack-decoded): the stand-in keeps values, it does not interpret them."""

    @staticmethod
    def encode(value: Any) -> Any:
        return value

    @staticmethod
    def decode(value: Any) -> Any:
        return value

    @staticmethod
    def semantically_equal(a: Any, b: Any) -> bool:
        return bool(a == b)


class _Field:
    """What the `tf` servicer reads of an attribute or block to plan (name, type, computed, default)."""

    def __init__(self, name: str, attribute: dict[str, Any]) -> None:
        from tf.types import Unknown

        self.name = self.type_name = name
        self.type = _PassThrough()
        self.computed = bool(attribute.get("computed"))
        self.optional = bool(attribute.get("optional"))
        self.required = bool(attribute.get("required"))
        self.requires_replace = False  # not in the bindings: replacements are a later step's table
        self.default = Unknown
        self.encode, self.decode = _PassThrough.encode, _PassThrough.decode
        self.semantically_equal = _PassThrough.semantically_equal


class ServedSchema:
    """One type's schema as the `tf` servicer asks for it: `to_pb()` for GetProviderSchema, fields to plan."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.version = int(schema.get("version", 0))
        self.block = schema["block"]
        self.attributes = [_Field(name, value) for name, value in self.block.get("attributes", {}).items()]
        self.block_types = [_Field(name, {}) for name in self.block.get("block_types", {})]

    def to_pb(self) -> Any:
        return pb.Schema(version=self.version, block=block_pb(self.block))


class _Type:
    """A resource or data source type of the stand-in; the engine validates its configuration against the
    served schema itself, so `validate` adds nothing. A plan of a new resource is the `tf` servicer's: the
    configured values, every unset computed attribute unknown. Nothing else is modelled yet: applying
    (create/update/delete) and refreshing refuse with an error naming the type."""

    type_name = ""
    schema: ServedSchema

    def __init__(self, provider: StandinProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.type_name.removeprefix(_PREFIX)

    @classmethod
    def get_schema(cls) -> ServedSchema:
        return cls.schema

    def validate(self, diags: Any, type_name: str, config: dict[str, Any]) -> None:
        return None

    def plan(self, ctx: Any, current: dict[str, Any] | None, planned: dict[str, Any]) -> dict[str, Any]:
        return planned

    def _refuse(self, ctx: Any, *_: Any) -> None:
        ctx.diagnostics.add_error(
            f"the stand-in AWS provider cannot create, read, update or delete {ctx.type_name}",
            "It serves the schema for init, validate and the plan of new resources; it reaches no AWS, not even "
            "moto, yet (docs/fidelity.md).",
        )

    create = read = update = delete = _refuse


class _DataSource(_Type):
    """A data source type: `read` returns the configuration with its computed attributes filled
    (data_sources.READERS); what it cannot read is an error diagnostic naming the type and the reason."""

    def read(self, ctx: Any, config: dict[str, Any]) -> dict[str, Any] | None:  # type: ignore[override]
        try:
            return data_sources.read(ctx.type_name, self.schema.block, config, self.provider.account)
        except data_sources.DataSourceError as error:
            ctx.diagnostics.add_error(f"the stand-in AWS provider cannot read {ctx.type_name}", str(error))
            return None


class StandinProvider:
    """The `tf` framework's Provider protocol, implemented for a schema derived from the bindings."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._provider = ServedSchema(schema["provider"])
        self._resources = [self._type(name, value) for name, value in schema["resource_schemas"].items()]
        self._data_sources = [
            self._type(name, value, _DataSource) for name, value in schema["data_source_schemas"].items()
        ]
        self.account = data_sources.Account({})

    @staticmethod
    def _type(name: str, schema: dict[str, Any], base: type[_Type] = _Type) -> type[_Type]:
        return type(name, (base,), {"type_name": name, "schema": ServedSchema(schema)})

    def get_model_prefix(self) -> str:
        return _PREFIX

    def full_name(self) -> str:
        return PROVIDER_ADDRESS

    def get_provider_schema(self, diags: Diagnostics) -> ServedSchema:
        return self._provider

    def validate_config(self, diags: Diagnostics, config: dict[str, Any]) -> None:
        return None

    def configure_provider(self, diags: Diagnostics, config: dict[str, Any]) -> None:
        # No credentials, no region check: nothing is called. The block's account and region are what the
        # data sources stand for (data_sources.Account).
        self.account = data_sources.Account(config)

    def get_resources(self) -> list[type[_Type]]:
        return self._resources

    def get_data_sources(self) -> list[type[_Type]]:
        return self._data_sources

    def get_functions(self) -> list[Any]:
        return []

    def new_resource(self, klass: type[_Type]) -> _Type:
        return klass(self)

    def new_data_source(self, klass: type[_Type]) -> _Type:
        return klass(self)


def _certificate_validation_options(planned: dict[str, Any]) -> dict[str, Any]:
    """aws_acm_certificate's CustomizeDiff (hashicorp/terraform-provider-aws internal/service/acm/certificate.go):
    with DNS validation a new certificate plans one `domain_validation_options` entry per domain, the domain
    name known and its record unknown, so a `for_each` over them has known keys; ACM adds the domain name to
    the subject alternative names, and so does the plan."""
    from tf.types import Unknown

    if planned.get("validation_method") != "DNS" or not isinstance(planned.get("domain_name"), str):
        return planned
    names = [str(planned["domain_name"])]
    sans = planned.get("subject_alternative_names")
    names += [name for name in sans if name not in names] if isinstance(sans, list) else []
    record = dict.fromkeys(("resource_record_name", "resource_record_type", "resource_record_value"), Unknown)
    return {
        **planned,
        "domain_validation_options": [{"domain_name": name, **record} for name in names],
        "subject_alternative_names": names,
    }


# What the real provider plans for a new resource beyond "computed is unknown", by type.
PLAN_MODIFIERS = {"aws_acm_certificate": _certificate_validation_options}


def servicer_class() -> type[Any]:
    """The `tf` framework's servicer, with PLAN_MODIFIERS applied to the plans of new resources (the
    framework's own create plan visits no resource code)."""
    from tf.provider import ProviderServicer
    from tf.utils import read_dynamic_value, to_dynamic_value

    class StandinServicer(ProviderServicer):  # type: ignore[misc]
        def PlanResourceChange(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
            response = super().PlanResourceChange(request, context)
            modifier = PLAN_MODIFIERS.get(request.type_name)
            planned = read_dynamic_value(response.planned_state) if modifier else None
            if modifier and isinstance(planned, dict) and read_dynamic_value(request.prior_state) is None:
                response.planned_state.CopyFrom(to_dynamic_value(modifier(planned)))
            return response

    return StandinServicer
