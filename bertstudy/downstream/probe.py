"""Score one checkpoint on both tasks: a linear probe on frozen features, or fine-tuning.

Probe (default): the checkpoint's last encoder layer gives one vector per character; segmentation
fits a softmax regression from a character's vector to its b/m/e/s tag and decodes each sentence
with Viterbi over the legal tag transitions; sentiment fits a logistic regression on the mean of a
review's vectors. Features are standardized, the regression is full-batch L-BFGS with a small L2
penalty from zero weights, in float32 (PROBE_DTYPE): no randomness at all, so a checkpoint scores the
same every time on one machine. The fits run where the model runs (`model_device`), so a pass on a GPU
does not wait for a CPU's (on 2 CPU cores the fits of a gpu_study-sized model, 5 layers x 3 tasks, took
about 75 s a checkpoint); a GPU's fit rounds a little differently from a CPU's.
With all_layers (what the pass uses) the same probe is also fitted on the embedding output (layer 0) and
on each encoder layer, all read from one forward (`model.encode(..., all_layers=True)`); the last layer's
result stays the checkpoint's score. Each result keeps its per-item outcome (a review right or wrong, a
sentence's word counts) for the paired tests between checkpoints.
Fine-tune (`finetune=True`): the encoder plus a linear head trained end to end for a few epochs
with AdamW (seeded shuffles), the usual way BERT is judged.

Text longer than the model's positions is cut into windows of max_seq_len - 2 characters, each
encoded as [CLS] window [SEP].
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertstudy.base.errors import BadInputError
from bertstudy.training.weights import CHECKPOINT, MILESTONE, PROBE_HINT, load_weights
from bertstudy.model import BertConfig, BertForPretraining
from bertstudy.pretraining.vocab import CLS_ID, SEP_ID, UNK_ID, Vocab
from bertstudy.downstream.association import sentence_counts
from bertstudy.downstream.metrics import TAGS, accuracy, segmentation_f1
from bertstudy.downstream.tasks import Review, SegSentence, fold_chars, model_text

L2 = 1e-3  # probe penalty on the mean squared weight: keeps L-BFGS finite on separable features
PROBE_ITERATIONS = 150  # L-BFGS iterations; the probes converge in well under that on these sizes
# float32, not float64: the fits are most of a checkpoint's probe time and run several times faster, and the
# F1 moves far below the ~1-point resolution of the test sets (docs/PERFORMANCE.md, "Downstream probe");
# L-BFGS stops when the float32 loss stops moving.
PROBE_DTYPE = torch.float32
# legal b/m/e/s transitions: a word is s, or b m* e
_ALLOWED = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1]], dtype=bool)  # from b,m,e,s to b,m,e,s
_START, _END = np.array([1, 0, 0, 1], bool), np.array([0, 0, 1, 1], bool)


@dataclass
class LoadedModel:
    model: BertForPretraining
    step: int
    heldout: dict | None  # the held-out eval stored with a milestone (None for other checkpoints)


def load_model(path, vocab: Vocab, device: str = "cpu") -> LoadedModel:
    """A milestone or a resumable checkpoint of this run, as an eval-mode model on `device`."""
    state = load_weights(path, (MILESTONE, CHECKPOINT), PROBE_HINT)
    model_config = BertConfig(**state["model_config"])
    if state["vocab_hash"] != vocab.hash:
        raise BadInputError(path, "was trained with another vocabulary than the run folder's vocab.txt")
    model = BertForPretraining(model_config)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise BadInputError(path, f"weights do not fit the model ({str(exc).splitlines()[0][:160]})") from None
    model.to(device).eval()
    return LoadedModel(model, int(state["step"]), state.get("heldout"))


def char_ids(text: str, vocab: Vocab) -> list[int]:
    """One id per character of `text`, folded as the corpus was (１ -> 1), so tags stay aligned."""
    return [vocab.index.get(char, UNK_ID) for char in fold_chars(text)]


def windows(ids: list[int], width: int) -> list[list[int]]:
    return [ids[i:i + width] for i in range(0, len(ids), width)] or [[]]


def model_device(model) -> torch.device:
    """The device a model's parameters are on: where its inputs go and where its probes fit."""
    return next(model.parameters()).device


def _padded_batches(sequences: list[list[int]], batch_size: int, device):
    """(indices, ids, mask) per batch of [CLS] sequence [SEP] rows; batches are formed by length so
    little time goes into padding."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for lo in range(0, len(order), batch_size):
        group = order[lo:lo + batch_size]
        longest = max(len(sequences[i]) for i in group) + 2
        ids = torch.zeros(len(group), longest, dtype=torch.long)
        mask = torch.zeros(len(group), longest, dtype=torch.long)
        for row, i in enumerate(group):
            seq = sequences[i]
            ids[row, :len(seq) + 2] = torch.tensor([CLS_ID, *seq, SEP_ID])
            mask[row, :len(seq) + 2] = 1
        yield group, ids.to(device), mask.to(device)


def _layer_states(model: BertForPretraining, ids: torch.Tensor, mask: torch.Tensor, last_only: bool) -> torch.Tensor:
    """[layers, B, T, H] float32 on the CPU (held there: every layer of a task's text can be GBs; each fit
    moves its one layer to the model's device): the last layer only, or the embedding output and every
    encoder layer, from one forward."""
    if last_only:
        return model.encode(ids, torch.zeros_like(ids), mask).float().cpu()[None]
    return torch.stack(model.encode(ids, torch.zeros_like(ids), mask, all_layers=True)).float().cpu()


@torch.inference_mode()
def encode_layers(model: BertForPretraining, sequences: list[list[int]], batch_size: int = 64,
                  last_only: bool = False) -> torch.Tensor:
    """[layers, tokens, H]: every sequence's own tokens ([CLS]/[SEP] left out), sequences one after the
    other in input order; layer 0 is the embedding output, 1..N the encoder layers (only the last with
    last_only). One tensor, not one per sequence, so the memory is what the vectors take:
    (N + 1) x tokens x H x 4 bytes (12 layers of 512 on 150k characters: 4 GB)."""
    lengths = [len(s) for s in sequences]
    starts = np.cumsum([0, *lengths]).tolist()
    layers = 1 if last_only else model.config.num_layers + 1
    out = torch.empty(layers, starts[-1], model.config.hidden_size)
    device = model_device(model)
    for group, ids, mask in _padded_batches(sequences, batch_size, device):
        states = _layer_states(model, ids, mask, last_only)
        for row, i in enumerate(group):
            out[:, starts[i]:starts[i + 1]] = states[:, row, 1:1 + lengths[i]]
    return out


@torch.inference_mode()
def mean_layers(model: BertForPretraining, sequences: list[list[int]], batch_size: int = 64,
                last_only: bool = False) -> torch.Tensor:
    """[layers, sequences, H]: each sequence's mean vector per layer, pooled batch by batch so the
    token vectors of every layer are never all held (what the sentiment probe reads)."""
    layers = 1 if last_only else model.config.num_layers + 1
    out = torch.empty(layers, len(sequences), model.config.hidden_size)
    device = model_device(model)
    for group, ids, mask in _padded_batches(sequences, batch_size, device):
        states = _layer_states(model, ids, mask, last_only)
        for row, i in enumerate(group):
            for layer in range(layers):  # a contiguous [n, H] slice per layer: the same sum as a one-layer pass
                out[layer, i] = states[layer, row, 1:1 + len(sequences[i])].mean(0)
    return out


def encode(model: BertForPretraining, sequences: list[list[int]], batch_size: int = 64) -> list[torch.Tensor]:
    """Last-layer vectors of each sequence's own tokens ([CLS]/[SEP] left out), in input order."""
    return list(encode_layers(model, sequences, batch_size, last_only=True)[0].split([len(s) for s in sequences]))


def segmentation_inputs(sentences: list[SegSentence], vocab: Vocab, width: int) -> tuple[list[list[int]], list[int]]:
    """Windows of every sentence and, per sentence, how many windows it has."""
    seqs, counts = [], []
    for sentence in sentences:
        parts = windows(char_ids(sentence.chars, vocab), width)
        seqs += parts
        counts.append(len(parts))
    return seqs, counts


def review_inputs(reviews: list[Review], vocab: Vocab, width: int) -> list[list[int]]:
    return [char_ids(model_text(r.text), vocab)[:width] or [UNK_ID] for r in reviews]


def sentence_sizes(sentences: list[SegSentence], vocab: Vocab, width: int) -> tuple[list[list[int]], list[int]]:
    """Every sentence's windows and, per sentence, its characters (its windows lie one after the other)."""
    seqs, counts = segmentation_inputs(sentences, vocab, width)
    bounds = np.cumsum([0, *counts]).tolist()
    return seqs, [sum(len(s) for s in seqs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def segmentation_features(model, sentences, vocab, width) -> list[torch.Tensor]:
    seqs, sizes = sentence_sizes(sentences, vocab, width)
    return list(encode_layers(model, seqs, last_only=True)[0].split(sizes))


def review_features(model, reviews, vocab, width) -> torch.Tensor:
    return mean_layers(model, review_inputs(reviews, vocab, width), last_only=True)[0]


@dataclass
class LinearProbe:
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        if features.is_sparse:
            logits = _sparse_standardized_logits(features, self.mean, self.std, self.weight, self.bias)
            return F.log_softmax(logits, dim=-1)
        return F.log_softmax(((features - self.mean) / self.std) @ self.weight.T + self.bias, dim=-1)


def _sparse_standardized_logits(x, mean, std, weight, bias) -> torch.Tensor:
    """((x - mean) / std) @ weight.T + bias for a sparse x, without the dense standardized copy:
    the same numbers up to rounding, in memory that grows with the non-zeros only."""
    return torch.sparse.mm(x, (weight / std).T) + (bias - (mean / std) @ weight.T)


def _dense_logits(x, weight, bias) -> torch.Tensor:
    return x @ weight.T + bias


def _sparse_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and sample standard deviation of a sparse matrix, as x.mean(0), x.std(0) give densely."""
    n = x.shape[0]
    mean = torch.sparse.sum(x, 0).to_dense() / n
    squares = torch.sparse.sum(x * x, 0).to_dense()
    return mean, ((squares - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt()



def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     l2: float = L2, iterations: int = PROBE_ITERATIONS, device=None) -> LinearProbe:
    """Softmax regression on standardized features; deterministic full-batch L-BFGS. `features` may be
    a sparse COO tensor (the identity control's one-hot characters): standardized implicitly, the
    same objective and optimizer, so a control differs from the model's probe in its features only.
    `device`: where the fit runs (default: the features'); the probe comes back on the CPU."""
    device = features.device if device is None else torch.device(device)
    x, labels = features.to(device=device, dtype=PROBE_DTYPE), labels.to(device)
    if x.is_sparse:
        x = x.coalesce()
        mean, std = _sparse_moments(x)
        std = std.clamp_min(1e-6)
        logits = functools.partial(_sparse_standardized_logits, x, mean, std)
    else:
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - mean) / std
        logits = functools.partial(_dense_logits, x)
    weight = torch.zeros(num_classes, x.shape[1], dtype=PROBE_DTYPE, device=device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=PROBE_DTYPE, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(weight, bias), labels) + l2 * weight.pow(2).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(*(part.detach().float().cpu() for part in (mean, std, weight, bias)))


def viterbi_tags(log_probs: np.ndarray) -> str:
    """The most likely legal b/m/e/s sequence for per-character tag log-probabilities [n, 4]."""
    n = len(log_probs)
    if n == 0:
        return ""
    neg = -1e30
    trans = np.where(_ALLOWED, 0.0, neg)
    score = np.where(_START, log_probs[0], neg)
    back = np.zeros((n, 4), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + trans  # [from, to]
        back[i] = candidates.argmax(0)
        score = candidates.max(0) + log_probs[i]
    score = np.where(_END, score, neg)
    best = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        best.append(int(back[i][best[-1]]))
    return "".join(TAGS[t] for t in reversed(best))


def _tag_tensor(sentences: list[SegSentence]) -> torch.Tensor:
    return torch.tensor([TAGS.index(t) for s in sentences for t in s.tags], dtype=torch.long)


def segmentation_result(test: list[SegSentence], predicted: list[str]) -> dict:
    """SIGHAN P/R/F1 and `sentence_counts`, [right, predicted, gold] words per test sentence in test
    order: what a paired bootstrap between two checkpoints resamples (association.py)."""
    gold = [s.tags for s in test]
    return {**segmentation_f1(gold, predicted), "sentence_counts": sentence_counts(gold, predicted).tolist()}


def sentiment_result(test: list[Review], predicted: list[int]) -> dict:
    """Accuracy and `item_correct`, 1/0 per test review in test order: what McNemar's test pairs."""
    labels = [r.label for r in test]
    return {**accuracy(labels, predicted), "item_correct": [int(a == b) for a, b in zip(labels, predicted)]}


def by_layer(results: list[dict], items: str) -> dict:
    """A checkpoint's per-layer results (layer 0 = embedding output, last = last encoder layer) as one
    point: the last layer's result (so `score` is the last layer's, as in a point without layers), `layers`
    (every layer's figures without the per-item list `items`) and `best_layer` (the highest score; on a tie the deeper
    layer, so the best is another layer than the last only when strictly better), which carries its own
    per-item list only when it is not the last layer (the last's is the point's)."""
    layers = [{"layer": i, **{k: v for k, v in r.items() if k != items}} for i, r in enumerate(results)]
    best = max(range(len(results)), key=lambda i: (results[i]["score"], i))
    best_layer = {"layer": best, "score": results[best]["score"]}
    if best != len(results) - 1:
        best_layer[items] = results[best][items]
    return {**results[-1], "layers": layers, "best_layer": best_layer}


# Cost: one forward gives every layer's features; the extra is a probe fit (and for segmentation a Viterbi
# pass over the test sentences) per layer, N + 1 instead of 1, and the features' memory (encode_layers);
# measured: docs/PERFORMANCE.md, "Downstream probe".
def sentence_features(model, train, test, vocab: Vocab, width: int, all_layers: bool = False) -> tuple:
    """(train [layers, tokens, H], test [layers, tokens, H], test sentences' sizes) for a token-level task:
    what segmentation and NER read. The two tasks share their sentences, so the pass encodes them once."""
    train_x = encode_layers(model, segmentation_inputs(train, vocab, width)[0], last_only=not all_layers)
    test_seqs, sizes = sentence_sizes(test, vocab, width)
    return train_x, encode_layers(model, test_seqs, last_only=not all_layers), sizes


def probe_segmentation(model, train: list[SegSentence], test: list[SegSentence], vocab: Vocab, width: int,
                       all_layers: bool = False, features: tuple | None = None) -> dict:
    """The last layer's probe (SIGHAN F1 and per-sentence counts); with all_layers, a probe on every layer
    (`by_layer`). `features`: sentence_features of these sentences, if already made."""
    train_x, test_x, sizes = features or sentence_features(model, train, test, vocab, width, all_layers)
    labels, results = _tag_tensor(train), []
    for layer_train, layer_test in zip(train_x, test_x):
        probe = fit_linear_probe(layer_train, labels, 4, device=model_device(model))
        predicted = [viterbi_tags(probe.log_probs(f).numpy()) for f in layer_test.split(sizes)]
        results.append(segmentation_result(test, predicted))
    return by_layer(results, "sentence_counts") if all_layers else results[-1]


def probe_sentiment(model, train: list[Review], test: list[Review], vocab: Vocab, width: int,
                    all_layers: bool = False) -> dict:
    """The last layer's probe (accuracy and per-review 0/1); with all_layers, a probe on every layer."""
    labels = torch.tensor([r.label for r in train], dtype=torch.long)
    train_x = mean_layers(model, review_inputs(train, vocab, width), last_only=not all_layers)
    test_x = mean_layers(model, review_inputs(test, vocab, width), last_only=not all_layers)
    results = []
    for layer_train, layer_test in zip(train_x, test_x):
        probe = fit_linear_probe(layer_train, labels, 2, device=model_device(model))
        results.append(sentiment_result(test, probe.log_probs(layer_test).argmax(-1).tolist()))
    return by_layer(results, "item_correct") if all_layers else results[-1]


# ---------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneSettings:
    epochs: int = 3  # a few passes, as BERT fine-tuning uses (2-4)
    lr: float = 1e-4  # small models from scratch tolerate more than BERT-base's 2e-5..5e-5
    batch_size: int = 32
    seed: int = 0


def _finetune(model: BertForPretraining, sequences: list[list[int]], targets: list, num_classes: int,
              token_level: bool, settings: FinetuneSettings) -> tuple[BertForPretraining, torch.nn.Linear]:
    torch.manual_seed(settings.seed)
    encoder = copy.deepcopy(model).train()
    device = model_device(model)
    head = torch.nn.Linear(model.config.hidden_size, num_classes).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    rng = np.random.default_rng([settings.seed, 15])
    total = settings.epochs * -(-len(sequences) // settings.batch_size)
    done = 0
    for _ in range(settings.epochs):
        order = rng.permutation(len(sequences))
        for lo in range(0, len(order), settings.batch_size):
            group = order[lo:lo + settings.batch_size]
            longest = max(len(sequences[i]) for i in group) + 2
            ids = torch.zeros(len(group), longest, dtype=torch.long)
            mask = torch.zeros_like(ids)
            labels = torch.full((len(group), longest), -100, dtype=torch.long)
            for row, i in enumerate(group):
                seq = sequences[i]
                ids[row, :len(seq) + 2] = torch.tensor([CLS_ID, *seq, SEP_ID])
                mask[row, :len(seq) + 2] = 1
                if token_level:
                    labels[row, 1:1 + len(seq)] = torch.tensor(targets[i])
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            hidden = encoder.encode(ids, torch.zeros_like(ids), mask)
            if token_level:
                loss = F.cross_entropy(head(hidden).reshape(-1, num_classes), labels.reshape(-1))
            else:
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                loss = F.cross_entropy(head(pooled), torch.tensor([targets[i] for i in group], device=device))
            for group_ in optimizer.param_groups:  # linear decay to zero, as BERT fine-tuning
                group_["lr"] = settings.lr * (1 - done / total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            done += 1
    return encoder.eval(), head


def finetune_segmentation(model, train, test, vocab, width, settings: FinetuneSettings) -> dict:
    seqs, targets = [], []
    for sentence in train:
        ids = char_ids(sentence.chars, vocab)
        tags = [TAGS.index(t) for t in sentence.tags]
        for lo in range(0, len(ids), width):
            seqs.append(ids[lo:lo + width])
            targets.append(tags[lo:lo + width])
    encoder, head = _finetune(model, seqs, targets, 4, True, settings)
    head = head.cpu()  # encode() returns CPU features
    with torch.inference_mode():
        predicted = [viterbi_tags(F.log_softmax(head(f), -1).numpy())
                     for f in segmentation_features(encoder, test, vocab, width)]
    return segmentation_result(test, predicted)


def finetune_sentiment(model, train, test, vocab, width, settings: FinetuneSettings) -> dict:
    encoder, head = _finetune(model, review_inputs(train, vocab, width), [r.label for r in train], 2, False, settings)
    head = head.cpu()
    with torch.inference_mode():
        predicted = head(review_features(encoder, test, vocab, width)).argmax(-1).tolist()
    return sentiment_result(test, predicted)
