"""Shared set-up for the training tests: a tiny deterministic corpus and a tiny model's flags."""

from __future__ import annotations

import random
from pathlib import Path

from bertstudy.corpus.corpus_io import Document, write_documents

# common characters, so a tiny corpus still has a vocabulary of a few hundred tokens
CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
         "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好"
         "应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系")


def tiny_documents(num_documents: int = 40, seed: int = 0) -> list[Document]:
    """Documents of 1-6 sentences of 4-20 characters; each document draws from its own slice of
    CHARS, so IsNext pairs share a character range and NotNext pairs usually do not."""
    rng = random.Random(seed)
    docs = []
    for d in range(num_documents):
        lo = (d * 17) % (len(CHARS) - 60)
        alphabet = CHARS[lo:lo + 60]
        sentences = ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 20)))
                     for _ in range(rng.randint(1, 6))]
        docs.append(Document(id=f"doc{d}", sentences=sentences, title=f"t{d}", source="test", domain="test"))
    return docs


def write_tiny_corpus(folder: Path, num_documents: int = 40, seed: int = 0) -> Path:
    path = Path(folder) / "corpus.jsonl"
    write_documents(path, tiny_documents(num_documents, seed))
    return path


def tiny_args(corpus: Path, out_dir: Path, cache_dir: Path, preset: str = "quick_plateau", **overrides) -> list[str]:
    """Command-line flags of a tiny run (hidden 32, 2 layers, seq 32) that takes a second or two; by default
    on the recipe the trainer tests were written for (quick_plateau: cosine, 15% masked, NSP trained)."""
    values = dict(corpus=corpus, out_dir=out_dir, cache_dir=cache_dir, hidden_size=32, num_layers=2, num_heads=2,
                  intermediate_size=64, max_seq_len=32, max_predictions=5, batch_size=4, grad_accum=2, steps=6,
                  warmup_steps=2, log_interval=2, eval_interval=3, save_interval=3, eval_instances=8, threads=1,
                  dropout=0.0, keep_last=0)
    values.update(overrides)
    args = ["--preset", preset, "--no-progress"]
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def tiny_training_parts(base: dict, **overrides):
    """(config, sampler, model) of the quick_plateau preset with `base` then `overrides`, on 30 tiny documents,
    the model initialised under torch seed 0: what the trainer tests build a Trainer from."""
    import numpy as np
    import torch

    from bertstudy.model import BertForPretraining
    from bertstudy.pretraining.instances import InstanceSampler
    from bertstudy.pretraining.token_cache import tokenize_documents
    from bertstudy.pretraining.vocab import build_vocab
    from bertstudy.training.config import preset_config
    from bertstudy.training.trainer import model_config_for

    config = preset_config("quick_plateau", **{**base, **overrides})
    docs = tiny_documents(30)
    vocab = build_vocab(s for d in docs for s in d.sentences)
    sampler = InstanceSampler(tokenize_documents(docs, vocab), np.arange(30), len(vocab), config.max_seq_len,
                              config.mask_rate, config.max_predictions, config.short_seq_prob, False)
    torch.manual_seed(0)
    return config, sampler, BertForPretraining(model_config_for(config, len(vocab)))
