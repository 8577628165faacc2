"""Pure core of the trigger service."""
