"""Charging per port: switches, meters, sessions (see docs/cli.md "Charging ports")."""
