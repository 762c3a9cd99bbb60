"""Triggers: the deferred side of the sensors; they only read APS (GET), never submit work."""
