"""Print the build environment of one stage's frontend as shell `export` lines (R3.5, R8.1).

`make frontend STAGE=beta` evaluates this output before `vite build`, so the API URL baked into a
stage's bundle comes from that stage's configuration (`StageConfig.api_url`), never from a hand-set
variable: "" for beta and gamma (same origin, CloudFront sends `/api/*` to the ALB), `https://api.<domain>`
for prod. An unknown stage or a bad configuration ends with one line on stderr and exit status 2.

It loads the configuration (cdktf.json and `CANVALO_*`) itself, as the synth does: it runs where the commit's
own code runs, in Build (`make frontend`, beside `make synth`), in the post-deploy tests (smoke.yml, with the
same settings Build had) and on a laptop, never in a pipeline-owned action, so it is not part of the pinned
toolkit (modules/pipeline_toolkit.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from names import STAGE_NAMES
from stacks.config import ConfigError, ProjectConfig, load_from_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_environment(project: ProjectConfig, stage_name: str) -> dict[str, str]:
    stage = project.stage(stage_name)
    return {"VITE_API_URL": stage.api_url, "VITE_STAGE": stage.name}


def render(environment: Mapping[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in environment.items())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.frontend_env", description=__doc__.splitlines()[0])
    parser.add_argument("stage", help=f"one of {', '.join(STAGE_NAMES)}")
    args = parser.parse_args(argv)
    try:
        if args.stage not in STAGE_NAMES:
            raise ConfigError(f"unknown stage {args.stage!r}: the stages are {', '.join(STAGE_NAMES)}")
        environment = build_environment(load_from_environment(environ, PROJECT_ROOT), args.stage)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render(environment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
