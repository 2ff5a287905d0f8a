"""Fill-mask inference: a trained model's top characters for each [MASK] of a text (fill_mask.py).

The text is tokenised as in training, one token per character, so the [MASK]s line up with the
characters around them.
"""

from __future__ import annotations

import torch

from bertstudy.base.errors import EXIT_BAD_INPUT, StudyError, UsageError
from bertstudy.model import BertForPretraining
from bertstudy.training.hf_export import CLS, MASK, SEP, UNK  # noqa: F401 (MASK: the scripts' placeholder)


def tokenize_chars(text: str, vocab_index: dict[str, int]) -> list[int]:
    """Character tokenization as in training: every non-space character is a token, the literal
    "[MASK]" (and any other bracketed special token of the vocabulary) is one token, characters
    outside the vocabulary become [UNK]. Whitespace is dropped, as BERT's basic tokenizer does."""
    ids, position = [], 0
    unk = vocab_index[UNK]
    while position < len(text):
        if text[position] == "[":
            end = text.find("]", position)
            special = text[position : end + 1] if end != -1 else ""
            if special and special in vocab_index:
                ids.append(vocab_index[special])
                position = end + 1
                continue
        char = text[position]
        if not char.isspace():
            ids.append(vocab_index.get(char, unk))
        position += 1
    return ids


def fill_mask(model: BertForPretraining, vocab_tokens: list[str], text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text` (left to right), the top_k tokens and their probabilities."""
    vocab_index = {token: index for index, token in enumerate(vocab_tokens)}
    missing = [token for token in (MASK, CLS, SEP, UNK) if token not in vocab_index]
    if missing:
        raise StudyError(f"vocabulary lacks the special token(s) {', '.join(missing)}", EXIT_BAD_INPUT)
    ids = [vocab_index[CLS]] + tokenize_chars(text, vocab_index) + [vocab_index[SEP]]
    if len(ids) > model.config.max_position:
        raise UsageError(f"text is {len(ids) - 2} tokens; the model takes at most {model.config.max_position - 2}")
    input_ids = torch.tensor([ids])
    mask_positions = (input_ids[0] == vocab_index[MASK]).nonzero().flatten()
    if mask_positions.numel() == 0:
        raise UsageError(f"text has no {MASK} to fill: {text!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            input_ids = input_ids.to(device)
            hidden = model.encode(input_ids, torch.zeros_like(input_ids), None)
            probs = torch.softmax(model.mlm_logits(hidden[0, mask_positions.to(device)]).float(), dim=-1)
    finally:
        model.train(was_training)
    k = min(top_k, len(vocab_tokens))
    top = probs.topk(k, dim=-1)
    return [
        [(vocab_tokens[index], float(prob)) for prob, index in zip(row_probs.tolist(), row_ids.tolist())]
        for row_probs, row_ids in zip(top.values, top.indices)
    ]
