"""Stage 1-2, the corpus: sources (sources/), cleaning (text_clean.py), the collector (collect.py), corpus
files (corpus_io.py) and the dataset report (dataset_report.py).
"""
