"""The across-model test: many small models at equal step, probed on real test sets against controls of
their own size (docs/ACROSS_MODELS_PLAN.md is the analysis plan; scripts/across_models.py runs it)."""
