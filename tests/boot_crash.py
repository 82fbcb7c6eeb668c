"""Imported by a server to make every worker die at start-up (tests the respawn backoff)."""

import os

os.register_at_fork(after_in_child=lambda: os._exit(3))
