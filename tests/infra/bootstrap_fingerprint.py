"""What each bootstrap stack deploys, fingerprinted, next to the BOOTSTRAP_VERSION it was recorded for.

Administrators apply `bootstrap-<stage>` by hand, once; the pipeline only checks the version it left in
SSM. So any change to a bootstrap stack's resources must come with a new BOOTSTRAP_VERSION, or stages
keep running an old bootstrap while the pipeline believes them current. tests/infra/test_bootstrap.py
compares the fingerprints below with the synthesized stacks; after a bump, record them with

    .venv/bin/python -m tests.infra.bootstrap_fingerprint --update
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from names import BOOTSTRAP_VERSION

FINGERPRINT_FILE = Path(__file__).resolve().with_name("bootstrap_fingerprint.json")
UPDATE_COMMAND = ".venv/bin/python -m tests.infra.bootstrap_fingerprint --update"


def fingerprint(document: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a stack's `resource` and `data` sections, without the construct
    metadata ("//") and without the version parameter's own value (which the bump itself changes)."""
    sections = copy.deepcopy({key: document.get(key, {}) for key in ("resource", "data")})
    for parameter in sections["resource"].get("aws_ssm_parameter", {}).values():
        if str(parameter.get("name", "")).endswith("/bootstrap-version"):
            parameter.pop("value", None)

    def without_metadata(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_metadata(v) for k, v in value.items() if k != "//"}
        if isinstance(value, list):
            return [without_metadata(v) for v in value]
        return value

    canonical = json.dumps(without_metadata(sections), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprints(stacks: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {name: fingerprint(document) for name, document in sorted(stacks.items()) if name.startswith("bootstrap-")}


def recorded() -> dict[str, Any]:
    """{"version": <int>, "stacks": {<stack>: <sha256>}} as committed."""
    data: dict[str, Any] = json.loads(FINGERPRINT_FILE.read_text())
    return data


def problems(current: Mapping[str, str], record: Mapping[str, Any]) -> list[str]:
    """Why the recorded fingerprints do not match the synthesized stacks; each says what to do."""
    found = []
    changed = sorted(name for name in current if record["stacks"].get(name) != current[name])
    if record["version"] == BOOTSTRAP_VERSION:
        found += [
            f"{name} changed: bump BOOTSTRAP_VERSION in names.py, record the new fingerprint "
            f"with `{UPDATE_COMMAND}`, and tell administrators to apply {name}"
            for name in changed
        ]
    else:
        found.append(
            f"BOOTSTRAP_VERSION is {BOOTSTRAP_VERSION} but the fingerprints were recorded for version "
            f"{record['version']}: record them with `{UPDATE_COMMAND}`, and tell administrators to apply "
            f"{', '.join(changed) or 'every bootstrap stack'}"
        )
    found += [
        f"{name} is recorded but no longer synthesized: record the fingerprints with `{UPDATE_COMMAND}`"
        for name in sorted(set(record["stacks"]) - set(current))
    ]
    return found


def synthesized_stacks() -> dict[str, dict[str, Any]]:
    """The bootstrap stacks of the fixture configuration (the one the tests synthesize)."""
    from main import synthesize
    from tests.support.config import fixture_project

    with tempfile.TemporaryDirectory() as outdir:
        synthesize(fixture_project({}), Path(outdir))
        return {
            path.parent.name: json.loads(path.read_text())
            for path in sorted((Path(outdir) / "stacks").glob("bootstrap-*/cdk.tf.json"))
        }


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["--update"]:
        print(f"usage: {UPDATE_COMMAND}", file=sys.stderr)
        return 2
    current = fingerprints(synthesized_stacks())
    FINGERPRINT_FILE.write_text(json.dumps({"version": BOOTSTRAP_VERSION, "stacks": current}, indent=2) + "\n")
    print(f"recorded the fingerprints of {', '.join(current)} for BOOTSTRAP_VERSION {BOOTSTRAP_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
