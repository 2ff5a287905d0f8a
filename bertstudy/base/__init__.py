"""Shared foundations: exit codes and errors (errors.py), atomic writes and checked reads (atomic_io.py),
the command-line helpers every script uses (cli.py). Imports nothing else of ours.
"""
