"""The supervisor: one arbiter loop that claims tasks and runs them in worker processes."""
