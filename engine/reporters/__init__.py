"""Reporters observe events; they never reach into the executor."""
