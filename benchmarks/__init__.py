"""Benchmarks of the request path and the build: scripts that print figures, not timed tests.

Each one runs with one command from a fresh clone (``make bench-<name>``, or ``.venv/bin/python -m
benchmarks.<name>`` once ``make setup`` has run) and prints its figures with the machine and the command.
Every request goes to 127.0.0.1, and every loop is bounded in requests and in time. docs/benchmarks.md
records the latest figures.
"""
