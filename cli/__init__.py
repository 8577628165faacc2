"""The `baton` command-line interface (entry point: cli.main:app)."""
