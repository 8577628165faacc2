"""Pure core of the stage-coordinator: decide and evolve, no I/O."""
