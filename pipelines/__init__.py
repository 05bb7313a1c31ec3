"""What the pipeline's CodeBuild actions run; every script also runs locally."""
