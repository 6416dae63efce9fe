"""Charging per port: switches, meters, sessions (see README "Charging")."""
