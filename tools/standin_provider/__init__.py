"""A stand-in for the hashicorp/aws Terraform provider, so the real engine can validate the stacks offline.

It replaces the real provider (no registry is reachable here) and serves the real provider's schema as the
`cdktn-provider-aws` bindings record it (`bindings`), over tfplugin6 with the `tf` framework (`provider`),
from a `-plugin-dir` layout (`plugin_dir`). It cannot show what the real provider decides beyond its schema:
validators, defaults, plan modifiers, replacements, API behaviour (docs/fidelity.md).
"""
