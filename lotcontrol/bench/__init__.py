"""Measurements that print figures (accuracy, speed). Not tests: nothing here asserts a time."""
