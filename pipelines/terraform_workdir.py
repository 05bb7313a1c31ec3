"""Where a privileged action's Terraform runs: on the synthesized JSON alone, never on files beside it.

The Build artifact's `cdktf.out/stacks/<stack>/` is written by the commit's own Build, so anything in it
other than `cdk.tf.json` is the commit's code to Terraform: a `terraform.d/plugins` folder is an implied
provider mirror that replaces the AWS provider (its source address still reads `hashicorp/aws`), a module
folder or a `.tf` file is loaded as configuration, a `.terraform.lock.hcl` or `.terraform/` pins or
pre-installs provider binaries. So, before any `terraform init`:

- `policy_check` refuses a stack folder holding anything but `cdk.tf.json`, and any top-level block of it
  outside an allowlist (no `module`, `check`, `ephemeral`, `import`);
- `isolated` copies that one file into a fresh directory this toolkit owns, where Terraform then runs;
- `terraform_environment` points Terraform at this toolkit's CLI configuration, whose explicit
  `provider_installation` turns off every implied local mirror (the working directory's
  `terraform.d/plugins`, `~/.terraform.d/plugins` and the system ones): "If you set the
  provider_installation block, Terraform no longer uses the implied local mirror directories"
  (https://developer.hashicorp.com/terraform/cli/config/config-file#implied-local-mirror-directories).
  Providers come from their registry and are checked against the lock file Plan recorded. The plugin
  cache is the action's own (deploy.yml's TF_PLUGIN_CACHE_DIR, the project's LOCAL cache), which Terraform
  uses only for packages matching the lock file's checksums.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

STACK_FILE = "cdk.tf.json"
CLI_CONFIG_FILE = "terraformrc"
CLI_CONFIGURATION = (
    "# Written by pipelines/terraform_workdir.py: providers only from their registry, no implied mirror.\n"
    "provider_installation {\n  direct {}\n}\n"
)


@cache
def workspace() -> Path:
    """This process's Terraform workspace: the CLI configuration and one folder per stack."""
    root = Path(tempfile.mkdtemp(prefix="canvalo-terraform-"))
    # The copies, the providers init installed there and the CLI configuration go with the process.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / CLI_CONFIG_FILE).write_text(CLI_CONFIGURATION)
    return root


def terraform_environment() -> dict[str, str]:
    """The variables that make Terraform read this toolkit's CLI configuration and no other."""
    return {"TF_CLI_CONFIG_FILE": str(workspace() / CLI_CONFIG_FILE)}


def isolated(stack_dir: Path) -> Path:
    """A fresh directory, named like `stack_dir`, holding only a copy of its `cdk.tf.json`.

    Run after `policy_check.enforce`, which refuses a stack folder holding anything else."""
    target = workspace() / "stacks" / stack_dir.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(stack_dir / STACK_FILE, target / STACK_FILE)
    return target
