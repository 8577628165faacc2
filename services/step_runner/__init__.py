"""The step-runner: runs background steps' actions."""
