"""Downstream tasks across training: word segmentation and sentiment, scored at milestone checkpoints.

tasks.py (the labelled sets and their leakage-free splits), metrics.py (SIGHAN word F1, accuracy),
probe.py (frozen-feature probe or fine-tuning of one checkpoint), baselines.py (jieba, a character
n-gram classifier, the untrained model), scoring.py (the whole pass, resumable), analysis.py
(MLM accuracy vs downstream score), association.py (the same with the pre-learning checkpoints
collapsed, the partial r given ln(step), first differences, paired tests), plots.py (the downstream chart).
"""
