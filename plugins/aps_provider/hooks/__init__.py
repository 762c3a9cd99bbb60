"""Hooks: the `aps` connection turned into APS clients."""
