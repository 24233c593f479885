"""Command-line tools: absl apps behind the single `hific-tf` command."""
