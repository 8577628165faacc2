"""The stage-coordinator: the only writer of a run."""
