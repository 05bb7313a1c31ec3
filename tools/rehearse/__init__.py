"""`make rehearse`: the synthesized pipeline's own actions, run as CodeBuild runs them, against moto.

docs/rehearsal.md says what it models, what it cannot, and how to read its output.
"""
