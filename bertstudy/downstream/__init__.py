"""Downstream tasks across training: word segmentation, sentiment and named entities, scored at milestone
checkpoints.

tasks.py (the labelled sets and their leakage-free splits), near_duplicates.py (near-copies out of the
test sets), ner.py (People's Daily entities) and msra.py (the MSRA NER corpus), metrics.py (SIGHAN word
F1, accuracy), probe.py (frozen-feature probe or fine-tuning of one checkpoint), baselines.py (jieba, a
character n-gram classifier, the untrained model), controls.py (what a probe scores beyond naming the
character), downstream_pass.py (the whole pass, resumable), mlm_vs_score.py (MLM accuracy vs downstream
score), association.py (the same with the pre-learning checkpoints collapsed, the partial r given
ln(step), first differences, paired tests). The chart is charts/downstream_chart.py.
"""
