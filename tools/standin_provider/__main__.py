"""`python -m tools.standin_provider serve <schema.json>` is what Terraform execs (the plugin directory's
executable); `python -m tools.standin_provider build <plugin-dir> [<cdk.tf.json>...]` writes that directory
for the types the given stacks use (default: every stack in cdktf.out/stacks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tools.standin_provider import bindings, plugin_dir


def _serve(schema_file: Path) -> int:
    import tf.provider
    from tf.runner import run_provider

    from tools.standin_provider.provider import StandinProvider, servicer_class

    # run_provider looks the servicer up in tf.provider when it starts: the stand-in's plans its own.
    tf.provider.ProviderServicer = servicer_class()
    run_provider(StandinProvider(json.loads(schema_file.read_text())), ["serve"])
    return 0


def _build(directory: Path, stacks: list[Path]) -> int:
    stacks = stacks or sorted((plugin_dir.ROOT / "cdktf.out" / "stacks").glob("*/cdk.tf.json"))
    if not stacks:
        print("no synthesized stacks in cdktf.out/stacks: run `make synth` first", file=sys.stderr)
        return 2
    resources, data_sources = plugin_dir.types_of(json.loads(stack.read_text()) for stack in stacks)
    print(plugin_dir.build(directory, resources, data_sources))
    return 0


def main(argv: list[str]) -> int:
    usage = "usage: python -m tools.standin_provider serve <schema.json> | build <plugin-dir> [<cdk.tf.json>...]"
    if len(argv) == 2 and argv[0] == "serve":
        return _serve(Path(argv[1]))
    if len(argv) >= 2 and argv[0] == "build":
        try:
            return _build(Path(argv[1]), [Path(arg) for arg in argv[2:]])
        except bindings.BindingsError as error:
            print(f"cannot derive the provider schema: {error}", file=sys.stderr)
            return 1
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
