"""Shared foundations: exit codes and errors (errors.py), atomic writes and checked reads (atomic_io.py),
the command-line helpers every script uses (cli.py), the one-line message for a missing package (deps.py),
file hashes (hashing.py), installed packages' folders found without importing them (package_files.py) and
the names of a run folder's files (run_files.py). Imports nothing else of ours.
"""
