"""`make rehearse`: the synthesized pipeline's own actions, run as CodeBuild runs them, against moto.

The README's "Rehearsal" section says what it models, what it cannot, and how to read its output.
"""
