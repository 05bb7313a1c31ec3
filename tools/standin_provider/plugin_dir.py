"""A `-plugin-dir` that holds the stand-in as `registry.terraform.io/hashicorp/aws`, the way Terraform looks
for an unpacked provider: `<dir>/<hostname>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>`
(https://developer.hashicorp.com/terraform/cli/config/config-file#implied-local-mirror-directories).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tools.standin_provider import bindings

ROOT = Path(__file__).resolve().parents[2]
# Derived schemas, one file per bindings version and set of types; not tracked (.gitignore).
CACHE = ROOT / ".cache" / "standin-provider"
PLATFORM = "linux_amd64"


def types_of(configurations: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
    """The resource and data source types that these Terraform JSON configurations use."""
    resources: set[str] = set()
    data_sources: set[str] = set()
    for configuration in configurations:
        resources.update(configuration.get("resource", {}))
        data_sources.update(configuration.get("data", {}))
    return resources, data_sources


def provider_folder(plugin_dir: Path, version: str) -> Path:
    return plugin_dir / "registry.terraform.io" / "hashicorp" / "aws" / version / PLATFORM


def build(plugin_dir: Path, resources: Iterable[str], data_sources: Iterable[str]) -> Path:
    """Write the stand-in into `plugin_dir`, serving the derived schema of these types; returns the
    executable. The schema file sits beside it, so the package's lock-file hash changes with the schema."""
    schema = bindings.cached(CACHE, resources, data_sources)
    folder = provider_folder(plugin_dir, schema["provider_version"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.json").write_text(json.dumps(schema, sort_keys=True))
    executable = folder / f"terraform-provider-aws_v{schema['provider_version']}"
    executable.write_text(
        "#!/bin/sh\n"
        "# The stand-in AWS provider (tools/standin_provider): Terraform execs it and speaks go-plugin on stdout.\n"
        f'PYTHONPATH={shlex.quote(str(ROOT))}"${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec {shlex.quote(sys.executable)} -m tools.standin_provider serve "$(dirname "$0")/schema.json"\n'
    )
    executable.chmod(0o755)
    return executable
