"""Stage 3a, from corpus to batches: the vocabulary, the token cache, pretraining instances, their masking
and keyed random streams, packing into rows, the step loader and the held-out split.
"""
