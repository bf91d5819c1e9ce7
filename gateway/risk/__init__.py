"""Continuous access: users' risk levels (SPEC 8) and who hears when one changes."""
