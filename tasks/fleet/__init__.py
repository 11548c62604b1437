"""The fleet: which devices exist, their groups (runtime options, budgets) and rollout waves."""
