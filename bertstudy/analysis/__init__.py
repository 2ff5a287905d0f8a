"""Stage 4, the numbers: statistics, curve families, dependence-aware intervals, the phase model, the
study's analysis dict, its text report, history reading and provenance. No torch.
"""
