"""Baton services: one package per process."""
