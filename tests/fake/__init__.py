"""The fake Trackier's own tests: the yardstick must be right before it measures."""
