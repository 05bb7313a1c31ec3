"""Print, as shell `export` lines, the environment the pipeline stack gives its actions, for a laptop.

    eval "$(python -m tools.run_env)"
    eval "$(python -m pipelines.stage_credentials --stage gamma --source-profile gamma-admin)"

The scripts under pipelines/ read only their environment (pipelines/run_env.py), which the pipeline stack
synthesizes into each CodeBuild project (stacks/run_environment.py). An administrator breaking glass from
a laptop (docs/security.md) sets the same variables with this command, from this checkout's configuration
(cdktf.json and `CANVALO_*`, loaded as the synth loads them), for every stage. A bad configuration is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from stacks.config import ConfigError, load_from_environment
from stacks.run_environment import run_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    argparse.ArgumentParser(prog="python -m tools.run_env", description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    environment = run_environment(project, project.stages)
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in environment.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
