"""The AWS provider's schema, derived from the installed `cdktn-provider-aws` bindings.

The bindings are generated from the real provider's schema (`terraform providers schema -json` of
hashicorp/aws at the version they name). Their jsii package (`cdktn_provider_aws/_jsii/*.jsii.tgz`) ships
the generated JavaScript, which keeps what the generator knew of every attribute:

- a comment `// <name> - computed: <bool>, optional: <bool>, required: <bool>` before each attribute's getter;
- the getter, which names the attribute's type (`getStringAttribute`, `getNumberListAttribute`,
  `Fn.tolist(...)` for a set, `new <X>List(this, "<name>", <wraps a set>)` for nested objects...);
- `synthesizeHclAttributes` / `<struct>ToHclTerraform`, which say whether a configurable name is a nested
  block (`isBlock: true`) and its collection (`list`, `set`, `map`, `struct` for a single block).

The result has the shape Terraform prints for `terraform providers schema -json` (a block: `attributes`,
`block_types`; an attribute: `type` or `nested_type`, `required`/`optional`/`computed`), so the served schema
can be compared with what the engine itself reports. What the generated code does not keep cannot be
derived: descriptions, `sensitive`, `deprecated`, a list block's `max_items` above 1, validators (allowed
values, lengths), defaults and plan modifiers (docs/fidelity.md).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BINDINGS_DISTRIBUTION = "cdktn-provider-aws"
_PREFIX = "aws_"

Block = dict[str, Any]  # {"attributes": {...}, "block_types": {...}} as `providers schema -json` prints it


class BindingsError(Exception):
    """The bindings do not describe what was asked (a type they do not know, code this parser cannot read)."""


@dataclass(frozen=True)
class _Attribute:
    name: str
    computed: bool
    optional: bool
    required: bool


@dataclass(frozen=True)
class _Hcl:
    is_block: bool
    kind: str  # simple, list, set, map, struct
    storage: str  # string, number, boolean, stringList, ..., or the nested struct's class name


_CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{\n(.*?)^\}", re.M | re.S)
_FUNCTION = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}", re.M | re.S)
_COMMENT = re.compile(r"^    // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)$", re.M)
_HCL = re.compile(
    r"""^\s+"?(\w+)"?: \{\s*value: [^\n]*,\s*isBlock: (true|false),\s*type: "(\w+)",\s*storageClassType: "(\w+)",""",
    re.M,
)
_TYPE_NAME = re.compile(r'static tfResourceType = "([\w]+)";')
_ELEMENT = re.compile(r"get\(index\) \{\s*return new (\w+)\(")
_PRIMITIVES = {"string": "string", "number": "number", "boolean": "bool"}
_GETTERS = {
    "String": "string",
    "Number": "number",
    "Boolean": "bool",
    "List": ["list", "string"],
    "NumberList": ["list", "number"],
    "StringMap": ["map", "string"],
    "NumberMap": ["map", "number"],
    "BooleanMap": ["map", "bool"],
}
_MAP_CLASSES = {"StringMap": "string", "NumberMap": "number", "BooleanMap": "bool", "AnyMap": "dynamic"}


def bindings_version() -> str:
    return importlib.metadata.version(BINDINGS_DISTRIBUTION)


def _tarball() -> Path:
    folder = resources.files("cdktn_provider_aws") / "_jsii"
    found = [Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jsii.tgz")]
    if len(found) != 1:
        raise BindingsError(
            f"expected one jsii package in {folder}, found {len(found)}: reinstall {BINDINGS_DISTRIBUTION}"
        )
    return found[0]


def module_folder(type_name: str, *, data: bool) -> str:
    """The folder of the generated code for a Terraform type: aws_s3_bucket -> s3-bucket, data -> data-aws-..."""
    if not type_name.startswith(_PREFIX):
        raise BindingsError(f"{type_name} is not an AWS provider type (it does not start with {_PREFIX})")
    stem = type_name.removeprefix(_PREFIX).replace("_", "-")
    return f"data-aws-{stem}" if data else stem


def read_sources(folders: Iterable[str]) -> dict[str, str]:
    """The generated `index.js` of each folder, read in one pass over the jsii package (it is ~45 MB)."""
    wanted = {f"package/lib/{folder}/index.js": folder for folder in folders}
    sources: dict[str, str] = {}
    with gzip.open(_tarball()) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            folder = wanted.get(member.name)
            extracted = archive.extractfile(member) if folder else None
            if folder and extracted:
                sources[folder] = extracted.read().decode()
                if len(sources) == len(wanted):
                    break
    missing = sorted(set(wanted.values()) - set(sources))
    if missing:
        raise BindingsError(f"{BINDINGS_DISTRIBUTION} {bindings_version()} has no generated code for {missing}")
    return sources


class _Module:
    """One generated file: its classes (resource, output references, lists) and HCL synthesis tables."""

    def __init__(self, source: str) -> None:
        self.classes = {match[1]: (match[2], match[3]) for match in _CLASS.finditer(source)}
        self.hcl = {_upper_first(match[1]): _hcl_table(match[2]) for match in _FUNCTION.finditer(source)}

    def top_class(self, type_name: str) -> str:
        for name, (base, body) in self.classes.items():
            found = _TYPE_NAME.search(body)
            if base.startswith("cdktn.Terraform") and found and found[1] == type_name:
                return name
        raise BindingsError(f"the generated code has no class for {type_name}")

    def block(self, class_name: str, hcl: dict[str, _Hcl]) -> Block:
        """The schema block of a generated class (the resource's own, or an `...OutputReference`)."""
        body = self.classes[class_name][1]
        attributes: dict[str, Any] = {}
        block_types: dict[str, Any] = {}
        for attribute in _attributes(body):
            synthesized = hcl.get(attribute.name)
            nested = re.search(rf'new (?:cdktn\.)?(\w+)\(this, "{attribute.name}"(?:, (true|false))?\)', body)
            if nested and nested[1] not in _MAP_CLASSES:
                self._nested(attribute, synthesized, nested[1], nested[2] == "true", attributes, block_types)
            elif synthesized and synthesized.is_block:  # the provider's blocks: a struct with no output reference
                struct = self.hcl[synthesized.storage.removesuffix("List")]
                block_types[attribute.name] = {"nesting_mode": synthesized.kind, "block": _block_from_hcl(struct)}
            else:
                attributes[attribute.name] = {"type": self._simple_type(body, attribute.name, synthesized)}
                attributes[attribute.name].update(_flags(attribute))
        return _block(attributes, block_types)

    def _nested(
        self,
        attribute: _Attribute,
        synthesized: _Hcl | None,
        class_name: str,
        wraps_set: bool,
        attributes: dict[str, Any],
        block_types: dict[str, Any],
    ) -> None:
        base, body = self.classes[class_name]
        element = class_name
        collection = "single"
        if base in ("cdktn.ComplexList", "cdktn.ComplexMap"):
            found = _ELEMENT.search(body)
            if not found:
                raise BindingsError(f"{class_name} names no element class")
            element = found[1]
            collection = "map" if base == "cdktn.ComplexMap" else ("set" if wraps_set else "list")
        struct = element.removesuffix("OutputReference")
        inner = self.block(element, self.hcl.get(struct, {}))
        if synthesized and synthesized.is_block:
            nested: dict[str, Any] = {"nesting_mode": collection, "block": inner}
            if collection == "single" and synthesized.kind != "struct":
                nested.update(nesting_mode="list", max_items=1)  # a list block of at most one (SDK MaxItems: 1)
            if attribute.required:
                nested["min_items"] = 1
            block_types[attribute.name] = nested
        elif synthesized:  # a configurable nested attribute (plugin framework's nested attributes)
            attributes[attribute.name] = {"nested_type": {**inner, "nesting_mode": collection}, **_flags(attribute)}
        else:  # computed only: the engine sees a plain object type
            object_type = ["object", _object_types(inner)]
            typed = object_type if collection == "single" else [collection, object_type]
            attributes[attribute.name] = {"type": typed, **_flags(attribute)}

    def _simple_type(self, body: str, name: str, synthesized: _Hcl | None) -> Any:
        getter = re.search(rf"(cdktn\.Fn\.tolist\()?this\.get(\w+)Attribute\('{name}'\)", body)
        if getter and getter[2] in _GETTERS:
            typed = _GETTERS[getter[2]]
            return ["set", typed[1]] if getter[1] and isinstance(typed, list) else typed
        mapped = re.search(rf'new cdktn\.(\w+)\(this, "{name}"\)', body)
        if mapped:
            return ["map", _MAP_CLASSES[mapped[1]]]
        if re.search(rf"this\.interpolationForAttribute\('{name}'\)", body):
            return "dynamic"
        if synthesized:
            return _hcl_type(synthesized)
        raise BindingsError(f"cannot read the type of {name!r} from the generated code")


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _hcl_table(body: str) -> dict[str, _Hcl]:
    return {match[1]: _Hcl(match[2] == "true", match[3], match[4]) for match in _HCL.finditer(body)}


def _attributes(body: str) -> list[_Attribute]:
    return [
        _Attribute(match[1], match[2] == "true", match[3] == "true", match[4] == "true")
        for match in _COMMENT.finditer(body)
    ]


def _flags(attribute: _Attribute) -> dict[str, bool]:
    flags = {"required": attribute.required, "optional": attribute.optional, "computed": attribute.computed}
    return {name: True for name, value in flags.items() if value}


def _block(attributes: dict[str, Any], block_types: dict[str, Any]) -> Block:
    block: Block = {}
    if attributes:
        block["attributes"] = dict(sorted(attributes.items()))
    if block_types:
        block["block_types"] = dict(sorted(block_types.items()))
    return block


def _hcl_type(synthesized: _Hcl) -> Any:
    storage = synthesized.storage
    for primitive, typed in _PRIMITIVES.items():
        if storage == primitive:
            return typed
        if storage in (f"{primitive}List", f"{primitive}Map"):
            return [synthesized.kind, typed]
    raise BindingsError(f"cannot read the type {synthesized.kind}/{storage} from the generated code")


def _block_from_hcl(hcl: dict[str, _Hcl]) -> Block:
    """A nested block of the provider's configuration: its structs have HCL tables only, no getters, and
    the generator keeps no required/optional for them; every AWS provider setting is optional."""
    attributes: dict[str, Any] = {}
    for name, synthesized in hcl.items():
        if synthesized.is_block:
            raise BindingsError(f"a provider block nested in another ({name}) is not read by this parser")
        attributes[name] = {"type": _hcl_type(synthesized), "optional": True}
    return _block(attributes, {})


def _object_types(block: Block) -> dict[str, Any]:
    return {name: attribute["type"] for name, attribute in block.get("attributes", {}).items()}


def type_schema(source: str, type_name: str) -> Block:
    """The schema block of `type_name` (a resource, a data source or the provider `aws`) from its generated code."""
    module = _Module(source)
    top = module.top_class(type_name)
    body = module.classes[top][1]
    return module.block(top, _hcl_table(body.split("synthesizeHclAttributes()", 1)[-1]))


def derive(resources_: Iterable[str], data_sources: Iterable[str]) -> dict[str, Any]:
    """The provider schema for these types, as `terraform providers schema -json` prints one provider."""
    wanted = [(name, module_folder(name, data=False), "resource_schemas") for name in sorted(set(resources_))]
    wanted += [(name, module_folder(name, data=True), "data_source_schemas") for name in sorted(set(data_sources))]
    sources = read_sources([folder for _, folder, _ in wanted] + ["provider"])
    provider = type_schema(sources["provider"], "aws")
    provider["attributes"].pop("alias")  # a meta-argument of every provider block, not in the provider's schema
    schema: dict[str, Any] = {
        "provider": {"version": 0, "block": provider},
        "resource_schemas": {},
        "data_source_schemas": {},
    }
    for name, folder, kind in wanted:
        schema[kind][name] = {"version": 0, "block": type_schema(sources[folder], name)}
    schema["provider_version"] = _provider_version(sources["provider"])
    return schema


def _provider_version(provider_source: str) -> str:
    found = re.search(r"providerVersion: '([\d.]+)'", provider_source)
    if not found:
        raise BindingsError("the generated provider class names no providerVersion")
    return found[1]


def cached(cache: Path, resources_: Iterable[str], data_sources: Iterable[str]) -> dict[str, Any]:
    """`derive`, kept in `cache/<bindings version>/<hash of the type list>.json`: deriving reads the whole
    jsii package (a few seconds), so it runs once per bindings version, set of types and parser."""

    names = sorted(set(resources_)), sorted(set(data_sources))
    key = hashlib.sha256(json.dumps(names).encode() + Path(__file__).read_bytes()).hexdigest()[:16]
    path = cache / f"{BINDINGS_DISTRIBUTION}-{bindings_version()}" / f"{key}.json"
    if path.is_file():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    schema = derive(*names)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # two pytest workers may derive at once
    partial.write_text(json.dumps(schema, sort_keys=True))
    partial.replace(path)
    return schema
