"""Stage 3a, from corpus to batches: the vocabulary, pretraining instances and masking, packing into rows,
the step loader and the held-out split.
"""
