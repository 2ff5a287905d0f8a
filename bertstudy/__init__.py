"""chinese-bert-correlation: does a Chinese BERT's MLM accuracy track its training steps?

One small package behind the study's top-level scripts; one module per concern.
See docs/DESIGN.md for which module owns what and the file formats they pass along.
"""

__version__ = "0.1.0"
