"""A BERT encoder with its two pretraining heads (masked LM and next-sentence prediction) in one
readable file.

Architecture as in the BERT paper (post-LayerNorm layers, erf GELU, tied MLM decoder, tanh pooler),
so that `hf_export.py` can map every weight one to one onto transformers' `BertForPreTraining`.
`BertConfig(pre_ln=True)` puts each layer's LayerNorm before its sub-layer instead
(x = x + Attn(LN(x)); x = x + FFN(LN(x))) and adds a final LayerNorm after the last layer, the
arrangement that trains stably at larger learning rates without a long warm-up (Xiong et al. 2020);
transformers' BERT is post-LN only, so such a model is not exported (hf_export.py says why).
Three departures that change speed, not results:
  * the query/key/value projections are one fused Linear (split again on export);
  * with labels, the MLM head runs only on the masked positions (about 15% of them): the [B, T, V]
    logits over every position are never built during training. The positions come from the host
    (`mlm_positions`, padded to a fixed multiple), so the forward has no data-dependent shape: no
    device-to-host sync and no torch.compile graph break;
  * packed rows (bertstudy/pretraining/packing.py): several instances share a row, each with its own
    `position_ids` and a block-diagonal attention mask from `instance_ids`, so each instance's
    outputs are those it would have alone, with almost no padding computed.

NSP label convention (see docs/DESIGN.md): 0 = sentence B is the true continuation (IsNext),
1 = B is a random segment (NotNext), as in BERT and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100  # label value of the positions that are not masked (PyTorch's CE default)
# What the 80/10/10 recipe did to a predicted position, by its code in `mlm_kinds` (0, 1, 2; -1 = none):
# [MASK] in its place, a random token in its place, left unchanged (pretraining/masking.py's KIND_*).
MLM_KINDS = ("mask", "random", "unchanged")


@dataclass
class BertConfig:
    vocab_size: int = 10000  # the character vocabulary of the study's corpus is 6000-10000 tokens
    hidden_size: int = 512  # "large_100k" width of the original study
    num_layers: int = 12  # BERT-base depth
    num_heads: int = 8  # 512 / 8 = 64-dim heads, as in BERT-base
    intermediate_size: int = 2048  # 4 x hidden, BERT's feed-forward ratio
    max_position: int = 128  # the study trains on 128-token instances
    type_vocab_size: int = 2  # segments A and B
    dropout: float = 0.1  # hidden and attention-probability dropout (BERT's value)
    layer_norm_eps: float = 1e-12  # BERT's epsilon; keeps export parity with transformers
    initializer_range: float = 0.02  # std of the normal init of every matrix (BERT)
    pad_token_id: int = 0  # [PAD] is id 0 in vocab.txt
    # False: BERT's post-LN layers. A stored model_config without the field (a model saved before the field
    # existed) loads as post-LN, as it was trained; True adds the `final_norm` parameters, nothing else changes names.
    pre_ln: bool = False

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")


@dataclass
class PretrainingOutput:
    loss: Tensor  # mlm_loss + nsp_loss (scalar)
    mlm_loss: Tensor  # mean cross-entropy over the masked positions
    nsp_loss: Tensor  # mean cross-entropy over the batch (0 when no NSP labels were given)
    mlm_correct: Tensor  # masked positions predicted right (int64, detached)
    mlm_count: Tensor  # masked positions in the batch
    nsp_correct: Tensor  # NSP pairs classified right
    nsp_count: Tensor  # NSP pairs with a label
    # per MLM_KINDS entry [3] (int64, detached): masked positions of that kind predicted right, and
    # their number; None when the batch carries no mlm_kinds
    mlm_kind_correct: Tensor | None = None
    mlm_kind_count: Tensor | None = None


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position, config.hidden_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor | None = None) -> Tensor:
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.word(input_ids) + self.position(position_ids) + self.segment(token_type_ids)
        return self.dropout(self.norm(hidden))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x)). With config.pre_ln:
    x = x + Attn(LN(x)); x = x + FFN(LN(x)) (the same two LayerNorms, applied before their sub-layers)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        hidden = config.hidden_size
        self.pre_ln = config.pre_ln
        self.num_heads = config.num_heads
        self.attn_dropout_p = config.dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)  # fused q, k, v: one matmul instead of three
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(hidden, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def attention(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """Multi-head self-attention with its output projection (no residual, no dropout after it)."""
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, hidden // self.num_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.attn_dropout_p if self.training else 0.0
        )
        return self.attn_out(attended.transpose(1, 2).reshape(batch, length, hidden))

    def ffn(self, x: Tensor) -> Tensor:
        return self.ffn_out(F.gelu(self.ffn_in(x)))  # F.gelu is the exact erf form, as BERT

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        if self.pre_ln:
            x = x + self.dropout(self.attention(self.attn_norm(x), key_mask))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attention(x, key_mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class BertForPretraining(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        # pre-LN: the residual stream is never normalised inside the layers, so it is once after the last
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_ln else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        # MLM head: transform (dense + GELU + LN), then the decoder tied to the word embeddings.
        self.mlm_dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.mlm_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.nsp = nn.Linear(config.hidden_size, 2)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------- forward
    def encode(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor | None,
               position_ids: Tensor | None = None, instance_ids: Tensor | None = None,
               all_layers: bool = False) -> Tensor | list[Tensor]:
        """Hidden states [B, T, H] of the last layer; with all_layers, the list [embedding output, layer 1,
        ..., layer N] of one forward (what transformers calls hidden_states; the per-layer probes read it).
        The list's last entry is always what the call without all_layers returns: with pre_ln, layer N
        is the last layer's output after the final LayerNorm (the input of the heads, as transformers'
        pre-LN models such as GPT-2 give it), layers 1..N-1 the un-normalised residual stream.
        attention_mask None means "no padding": SDPA then gets no mask
        and may take its fastest (flash / memory-efficient) kernel. instance_ids (packed rows, 0 =
        padding) replaces attention_mask: a position attends only to positions of its own instance.
        The mask is built once per forward as an additive mask in the attention's dtype: SDPA turns a
        boolean mask into that itself, in every layer (2 aten::where per layer). With any mask SDPA
        cannot use flash attention on CUDA (it takes no arbitrary mask): torch 2.13 tries flash, then
        memory-efficient, math, cuDNN (`torch._C._get_sdp_priority_order()` = [1, 2, 0, 3, 4]), so a
        block-diagonal mask gets the memory-efficient kernel; the CPU its flash-for-CPU kernel."""
        allowed = None
        if instance_ids is not None:  # [B, 1, T, T]; padding attends to padding, never to an instance
            allowed = instance_ids[:, None, :, None] == instance_ids[:, None, None, :]
        elif attention_mask is not None:
            allowed = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: True = may be attended
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        key_mask = None if allowed is None else additive_mask(allowed, _attention_dtype(hidden))
        states = [hidden] if all_layers else []
        for layer in self.layers:
            hidden = layer(hidden, key_mask)
            if all_layers:  # kept only when asked: training never holds the list
                states.append(hidden)
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
            if all_layers:  # layer N as the heads see it (the docstring)
                states[-1] = hidden
        return states if all_layers else hidden

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits for hidden states of any leading shape [..., H] -> [..., V]."""
        transformed = self.mlm_norm(F.gelu(self.mlm_dense(hidden)))
        return F.linear(transformed, self.embeddings.word.weight, self.mlm_bias)

    def nsp_logits(self, hidden: Tensor, cls_positions: Tensor | None = None) -> Tensor:
        """NSP logits of the [CLS] position of each row, or of the flat cls_positions of packed rows."""
        cls_hidden = hidden[:, 0] if cls_positions is None else hidden.reshape(-1, hidden.shape[-1])[cls_positions]
        return self.nsp(torch.tanh(self.pooler(cls_hidden)))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor | None = None,
        mlm_labels: Tensor | None = None,
        nsp_labels: Tensor | None = None,
        position_ids: Tensor | None = None,
        instance_ids: Tensor | None = None,
        mlm_positions: Tensor | None = None,
        cls_positions: Tensor | None = None,
        mlm_kinds: Tensor | None = None,
    ) -> PretrainingOutput | tuple[Tensor, Tensor]:
        """input_ids/token_type_ids/attention_mask: [B, T] (mask 1 = real token, 0 = pad; None = no pad).
        mlm_labels: [B, T], IGNORE_INDEX except at masked positions; or, with mlm_positions [P] (flat
        indices into B x T, from the host), [P] labels of those positions (IGNORE_INDEX = a padding slot).
        nsp_labels: [B] (0 = IsNext), or [N] with cls_positions [N] (flat; IGNORE_INDEX = padding slot).
        position_ids/instance_ids: packed rows (see the module docstring).
        mlm_kinds: shaped as mlm_labels, each predicted position's index in MLM_KINDS (accuracy by kind).
        Without labels: (mlm_logits [B, T, V], nsp_logits); with labels: PretrainingOutput.
        Without mlm_positions the head scores every position (correct, but [B x T, V] logits: the
        trainer always passes positions)."""
        hidden = self.encode(input_ids, token_type_ids, attention_mask, position_ids, instance_ids)
        nsp_logits = self.nsp_logits(hidden, cls_positions)
        if mlm_labels is None and nsp_labels is None:
            return self.mlm_logits(hidden), nsp_logits

        zero = hidden.new_zeros(())
        kind_correct = kind_count = None
        if mlm_labels is not None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            # gather at host-computed positions: a fixed shape, no boolean-mask indexing (no sync)
            selected = flat if mlm_positions is None else flat[mlm_positions]
            targets = mlm_labels.reshape(-1)
            logits = self.mlm_logits(selected)
            mlm_loss, mlm_correct, mlm_count = _masked_cross_entropy(logits, targets)
            if mlm_kinds is not None:
                kind_correct, kind_count = _correct_by_kind(logits, targets, mlm_kinds.reshape(-1))
        else:
            mlm_loss, mlm_correct, mlm_count = zero, zero.long(), zero.long()

        if nsp_labels is not None:
            nsp_loss, nsp_correct, nsp_count = _masked_cross_entropy(nsp_logits, nsp_labels.reshape(-1))
        else:
            nsp_loss, nsp_correct, nsp_count = zero, zero.long(), zero.long()

        return PretrainingOutput(
            loss=mlm_loss + nsp_loss,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
            mlm_correct=mlm_correct,
            mlm_count=mlm_count,
            nsp_correct=nsp_correct,
            nsp_count=nsp_count,
            mlm_kind_correct=kind_correct,
            mlm_kind_count=kind_count,
        )

    # ----------------------------------------------------------------------------- utilities
    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied decoder counted once). non_embedding leaves out the word,
        position and segment tables, the count used in 6 x N FLOPs-per-token estimates."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.embeddings
            total -= emb.word.weight.numel() + emb.position.weight.numel() + emb.segment.weight.numel()
        return total

    def configure_optimizer(self, lr, weight_decay, betas, eps, device_type) -> torch.optim.AdamW:
        """AdamW with weight decay on the weight matrices and embedding tables only; biases and
        LayerNorm parameters (all 1-D) are not decayed, as in BERT (whose optimizer excludes
        exactly "bias" and "LayerNorm"). fused=True on CUDA: one kernel for all parameters."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        extra = {"fused": True} if device_type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, **extra)


def _attention_dtype(hidden: Tensor) -> torch.dtype:
    """The dtype q, k and v have in SDPA: autocast's where it is on, else the hidden states'."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where attention is allowed, -inf elsewhere (what SDPA makes of a boolean mask, once)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def _masked_cross_entropy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mean cross-entropy over the targets that are not IGNORE_INDEX, correct, count), all tensors:
    sum / max(count, 1), so a batch without targets gives loss 0, not NaN, and nothing leaves the device."""
    valid = targets != IGNORE_INDEX
    count = valid.sum()
    loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum") / count.clamp(min=1)
    correct = ((logits.detach().argmax(-1) == targets) & valid).sum()
    return loss, correct, count


def _correct_by_kind(logits: Tensor, targets: Tensor, kinds: Tensor) -> tuple[Tensor, Tensor]:
    """(correct [K], count [K]) over the targets that are not IGNORE_INDEX, split by kind (K = len(MLM_KINDS));
    fixed shapes, no device-to-host sync. A kind outside 0..K-1 (padding) counts nowhere."""
    valid = targets != IGNORE_INDEX
    hits = (logits.detach().argmax(-1) == targets) & valid
    of_kind = (kinds.unsqueeze(-1) == torch.arange(len(MLM_KINDS), device=kinds.device)) & valid.unsqueeze(-1)
    return (of_kind & hits.unsqueeze(-1)).sum(0), of_kind.sum(0)


def attention_flops_per_token(config: BertConfig, seq_len: int) -> int:
    """Training FLOPs per token of the attention score/value products: 12 x layers x hidden x T
    (forward 2 matmuls x 2 FLOPs x T x hidden, times 3 for forward + backward)."""
    return 12 * config.num_layers * config.hidden_size * seq_len


def training_flops_per_token(model: BertForPretraining, seq_len: int) -> int:
    """6 x non-embedding parameters + the attention term: the MFU numerator per token."""
    return 6 * model.num_parameters(non_embedding=True) + attention_flops_per_token(model.config, seq_len)


def training_flops(config: BertConfig, tokens: int, attended: int, masked: int, sentences: int) -> int:
    """Training FLOPs (2 per multiply-add; backward twice the forward, so 3x the forward) of the matrix
    products of `tokens` positions, where `attended` is the sum over attention blocks of length n of n^2
    (a position attends within its own instance), `masked` the MLM-predicted positions and `sentences`
    the [CLS] positions the NSP head reads. Per layer and token: Q, K, V and the output projection (4 H^2
    multiply-adds) and the feed-forward (2 H F); per layer and block: scores and weighted values (2 n^2 H);
    per masked position: the MLM transform (H^2) and the decoder onto the vocabulary (H V); per sentence:
    the pooler (H^2) and the NSP classifier (2 H). Embedding look-ups, LayerNorm, GELU, softmax and the
    biases are not matrix products and are left out. With the real (non-padding) counts of a step this is
    the work the step needs; with a padded grid's counts, the work it computes."""
    h, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    multiply_adds = (config.num_layers * (tokens * (4 * h * h + 2 * h * f) + attended * 2 * h)
                     + masked * (h * h + h * v) + sentences * (h * h + 2 * h))
    return 6 * multiply_adds


__all__ = [
    "IGNORE_INDEX",
    "BertConfig",
    "PretrainingOutput",
    "BertForPretraining",
    "attention_flops_per_token",
    "training_flops",
    "training_flops_per_token",
]
