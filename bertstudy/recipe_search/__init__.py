"""The recipe search of scripts/quick_recipes.py: candidates (overrides of the quick_plateau preset), one
training run each through training.run.run_training, one results line each, and the results as a table.
"""
