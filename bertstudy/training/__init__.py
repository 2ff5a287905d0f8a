"""Stage 3b, the run: device and precision, config and presets, the optimizer step, the run loop, batch
fitting, checkpoints, the run folder and its files, milestones and the transformers export.
"""
