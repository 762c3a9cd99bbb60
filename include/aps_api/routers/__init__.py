"""One router per resource: health, models (with viewer tokens, objects, properties), metrics, viewer page."""
