"""Use cases: each loads state, computes a plan, applies it (with undo) and saves state."""
