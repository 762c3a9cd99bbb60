"""One router per concern: health, models (results), viewer tokens, metrics, the viewer page."""
