"""Sensors: waiting on Model Derivative translations (poke or deferred to a trigger)."""
