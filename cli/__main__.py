"""python -m cli: the same as the `baton` command."""

from cli.main import app

app(prog_name="baton")
