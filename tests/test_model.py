"""The BERT model: padding is never attended to, the masked-only MLM path equals the full-logit
path (loss and gradients), dropout is off in eval, init and parameter counts are BERT's."""

import pytest
import torch
import torch.nn.functional as F

from bertstudy.model import (
    IGNORE_INDEX,
    BertConfig,
    BertForPretraining,
    PretrainingOutput,
    attention_flops_per_token,
    training_flops_per_token,
)

torch.set_num_threads(1)


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=16)
    values.update(overrides)
    return BertConfig(**values)


def make_batch(config: BertConfig, batch=3, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch, length), generator=gen)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2 :] = 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # the second row is padded
    input_ids[1, 8:] = config.pad_token_id
    mlm_labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, cols in enumerate([(1, 4, 7), (2, 5), (3, 9, 10)]):
        for col in cols:
            mlm_labels[row, col] = input_ids[row, col]
    nsp_labels = torch.tensor([0, 1, 0])
    return input_ids, token_type_ids, attention_mask, mlm_labels, nsp_labels


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return BertForPretraining(tiny_config()).eval()


def test_inference_shapes(model):
    ids, types, mask, _, _ = make_batch(model.config)
    mlm_logits, nsp_logits = model(ids, types, mask)
    assert mlm_logits.shape == (3, 12, 60)
    assert nsp_logits.shape == (3, 2)


def test_padding_is_not_attended_to(model):
    ids, types, mask, _, _ = make_batch(model.config)
    before, _ = model(ids, types, mask)
    changed = ids.clone()
    changed[1, 8:] = torch.tensor([7, 8, 9, 10])  # new ids at the padded positions only
    after, _ = model(changed, types, mask)
    torch.testing.assert_close(before[1, :8], after[1, :8], rtol=0, atol=1e-6)
    assert not torch.allclose(before[1, 8:], after[1, 8:])  # the padded positions themselves do change
    # and without the mask the change does leak into real positions (so the test can fail)
    leaked, _ = model(changed, types, None)
    unmasked, _ = model(ids, types, None)
    assert not torch.allclose(leaked[1, :8], unmasked[1, :8])


def test_no_mask_equals_all_ones_mask(model):
    ids, types, _, _, _ = make_batch(model.config)
    ones = torch.ones_like(ids)
    torch.testing.assert_close(model(ids, types, ones)[0], model(ids, types, None)[0], rtol=1e-5, atol=1e-6)


def full_logit_losses(model, ids, types, mask, mlm_labels, nsp_labels):
    mlm_logits, nsp_logits = model(ids, types, mask)
    mlm_loss = F.cross_entropy(mlm_logits.reshape(-1, mlm_logits.shape[-1]), mlm_labels.reshape(-1), ignore_index=IGNORE_INDEX)
    nsp_loss = F.cross_entropy(nsp_logits, nsp_labels)
    return mlm_logits, nsp_logits, mlm_loss, nsp_loss


def test_masked_only_loss_and_counts_equal_full_logits(model):
    ids, types, mask, mlm_labels, nsp_labels = make_batch(model.config)
    out = model(ids, types, mask, mlm_labels, nsp_labels)
    assert isinstance(out, PretrainingOutput)
    mlm_logits, nsp_logits, mlm_loss, nsp_loss = full_logit_losses(model, ids, types, mask, mlm_labels, nsp_labels)
    torch.testing.assert_close(out.mlm_loss, mlm_loss)
    torch.testing.assert_close(out.nsp_loss, nsp_loss)
    torch.testing.assert_close(out.loss, mlm_loss + nsp_loss)
    selected = mlm_labels != IGNORE_INDEX
    assert out.mlm_count.item() == 8
    assert out.mlm_correct.item() == (mlm_logits.argmax(-1)[selected] == mlm_labels[selected]).sum().item()
    assert out.nsp_count.item() == 3
    assert out.nsp_correct.item() == (nsp_logits.argmax(-1) == nsp_labels).sum().item()
    assert not out.mlm_correct.requires_grad and out.mlm_correct.dtype == torch.int64


def test_masked_only_gradients_equal_full_logit_gradients():
    torch.manual_seed(1)
    model = BertForPretraining(tiny_config()).eval()  # eval: dropout off so both passes are identical
    ids, types, mask, mlm_labels, nsp_labels = make_batch(model.config, seed=3)
    model(ids, types, mask, mlm_labels, nsp_labels).loss.backward()
    fast = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    _, _, mlm_loss, nsp_loss = full_logit_losses(model, ids, types, mask, mlm_labels, nsp_labels)
    (mlm_loss + nsp_loss).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")


def test_batch_without_masked_positions_gives_zero_mlm_loss(model):
    ids, types, mask, mlm_labels, nsp_labels = make_batch(model.config)
    out = model(ids, types, mask, torch.full_like(mlm_labels, IGNORE_INDEX), nsp_labels)
    assert out.mlm_loss.item() == 0.0 and out.mlm_count.item() == 0
    assert torch.isfinite(out.loss)
    only_mlm = model(ids, types, mask, mlm_labels, None)
    assert only_mlm.nsp_count.item() == 0 and only_mlm.nsp_loss.item() == 0.0


def test_dropout_is_active_in_train_and_off_in_eval():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(dropout=0.5))
    ids, types, mask, _, _ = make_batch(model.config)
    model.train()
    assert not torch.allclose(model(ids, types, mask)[0], model(ids, types, mask)[0])
    model.eval()
    torch.testing.assert_close(model(ids, types, mask)[0], model(ids, types, mask)[0], rtol=0, atol=0)


def test_init_follows_bert():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(vocab_size=2000, hidden_size=64, intermediate_size=256))
    layer = model.layers[0]
    assert abs(layer.ffn_in.weight.std().item() - 0.02) < 0.002
    assert abs(model.embeddings.word.weight[1:].std().item() - 0.02) < 0.002
    assert torch.count_nonzero(model.embeddings.word.weight[0]) == 0  # [PAD] row
    assert torch.count_nonzero(layer.qkv.bias) == 0 and torch.count_nonzero(model.mlm_bias) == 0
    assert torch.all(layer.attn_norm.weight == 1) and torch.count_nonzero(layer.attn_norm.bias) == 0


def test_parameter_counts_match_formula():
    config = tiny_config()
    model = BertForPretraining(config)
    h, i, v, n = config.hidden_size, config.intermediate_size, config.vocab_size, config.num_layers
    per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
    heads = (h * h + h) + (h * h + h + 2 * h + v) + (2 * h + 2)  # pooler, MLM transform+bias, NSP
    embeddings = (v + config.max_position + config.type_vocab_size) * h + 2 * h
    assert model.num_parameters(non_embedding=True) == n * per_layer + heads + 2 * h
    assert model.num_parameters() == n * per_layer + heads + embeddings
    assert attention_flops_per_token(config, 16) == 12 * n * h * 16
    assert training_flops_per_token(model, 16) == 6 * model.num_parameters(True) + 12 * n * h * 16


def test_optimizer_decays_matrices_only(model):
    optimizer = model.configure_optimizer(lr=1e-4, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-6, device_type="cpu")
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert any(p is model.mlm_bias for p in no_decay["params"])


def test_a_few_steps_learn_a_fixed_batch():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(dropout=0.0))
    batch = make_batch(model.config)
    optimizer = model.configure_optimizer(lr=3e-3, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-6, device_type="cpu")
    first = None
    for _ in range(30):
        out = model(*batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = out.loss.item() if first is None else first
    assert out.loss.item() < 0.5 * first


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="multiple"):
        BertConfig(hidden_size=30, num_heads=4)


def test_bf16_autocast_matches_fp32_within_bf16_tolerance():
    """The mixed-precision path the trainer takes (bf16 autocast, fp32 master weights) computes the
    same losses and gradients as plain fp32, to within bf16's ~3 significant digits."""
    torch.manual_seed(2)
    model = BertForPretraining(tiny_config()).eval()
    ids, types, mask, mlm_labels, nsp_labels = make_batch(model.config, seed=5)
    plain = model(ids, types, mask, mlm_labels, nsp_labels)
    plain.loss.backward()
    plain_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(ids, types, mask, mlm_labels, nsp_labels)
    mixed.loss.backward()
    torch.testing.assert_close(mixed.loss.float(), plain.loss, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(mixed.mlm_loss.float(), plain.mlm_loss, rtol=2e-2, atol=2e-2)
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32, name  # master weights and their gradients stay fp32
        scale = plain_grads[name].abs().max().item() + 1e-8
        err = (p.grad - plain_grads[name]).abs().max().item()
        assert err <= 0.05 * scale, f"gradient of {name}: max error {err:.3g} vs max {scale:.3g}"


def test_fused_adamw_takes_the_same_steps_as_the_plain_one():
    """The optimizer the trainer builds for CUDA (fused=True, one kernel for all parameters) moves the
    weights exactly as the per-parameter loop used on CPU; torch runs the fused kernel on CPU too."""
    torch.manual_seed(3)
    plain_model = BertForPretraining(tiny_config(dropout=0.0))
    fused_model = BertForPretraining(tiny_config(dropout=0.0))
    fused_model.load_state_dict(plain_model.state_dict())
    start = [p.detach().clone() for p in plain_model.parameters()]
    settings = dict(lr=3e-3, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-6)
    plain = plain_model.configure_optimizer(**settings, device_type="cpu")
    fused = fused_model.configure_optimizer(**settings, device_type="cuda")
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    batch = make_batch(plain_model.config, seed=4)
    for _ in range(3):
        for model, optimizer in ((plain_model, plain), (fused_model, fused)):
            optimizer.zero_grad(set_to_none=True)
            model(*batch).loss.backward()
            optimizer.step()
    for (name, p), q in zip(plain_model.named_parameters(), fused_model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert all(not torch.equal(p, s) for p, s in zip(plain_model.parameters(), start))  # every weight moved


@pytest.mark.parametrize("amp", [False, True])
def test_the_attention_mask_is_built_once_per_forward_in_the_attention_dtype(monkeypatch, amp):
    """Every layer gets the same additive mask, already in q's dtype, so SDPA converts
    nothing per layer (with a boolean mask it ran 2 aten::where per layer); and outputs are unchanged."""
    config = tiny_config(dropout=0.0)
    torch.manual_seed(0)
    model = BertForPretraining(config).eval()
    ids = torch.randint(5, config.vocab_size, (2, 12))
    instance_ids = torch.ones_like(ids)
    instance_ids[:, 7:] = 2
    instance_ids[1, 10:] = 0  # padding
    positions = torch.cat([torch.arange(7), torch.arange(5)]).expand(2, 12)
    real_sdpa = F.scaled_dot_product_attention
    seen = []

    def recording(q, k, v, attn_mask=None, **kwargs):
        seen.append((attn_mask, q.dtype))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    context = torch.autocast("cpu", torch.bfloat16) if amp else torch.no_grad()
    with torch.no_grad(), context:
        hidden = model.encode(ids, torch.zeros_like(ids), None, positions, instance_ids)
    masks = [mask for mask, _ in seen]
    assert len(masks) == config.num_layers and all(mask is masks[0] for mask in masks)
    assert all(mask.dtype == dtype for mask, dtype in seen) and masks[0].dtype.is_floating_point
    allowed = instance_ids[:, None, :, None] == instance_ids[:, None, None, :]
    assert torch.equal(masks[0] == 0, allowed) and torch.isneginf(masks[0][~allowed]).all()
    monkeypatch.undo()
    if not amp:  # the same outputs as SDPA's own conversion of the boolean mask
        reference = model.embeddings(ids, torch.zeros_like(ids), positions)
        with torch.no_grad():
            for layer in model.layers:
                reference = layer(reference, allowed)
        torch.testing.assert_close(hidden, reference)


# ---- pre-LN layers

def _hand_attention(layer, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention from the layer's weights, written out (softmax(q k^T / sqrt(d)) v), no mask."""
    batch, length, hidden = x.shape
    heads = layer.num_heads
    q, k, v = (t.view(batch, length, heads, hidden // heads).transpose(1, 2) for t in layer.qkv(x).chunk(3, dim=-1))
    weights = torch.softmax(q @ k.transpose(-1, -2) / (hidden // heads) ** 0.5, dim=-1)
    return layer.attn_out((weights @ v).transpose(1, 2).reshape(batch, length, hidden))


def _hand_ffn(layer, x: torch.Tensor) -> torch.Tensor:
    return layer.ffn_out(0.5 * layer.ffn_in(x) * (1.0 + torch.erf(layer.ffn_in(x) / 2 ** 0.5)))


def _perturbed(model):
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so each one's place shows
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def test_a_pre_ln_layer_is_the_formula_by_hand():
    torch.manual_seed(0)
    model = _perturbed(BertForPretraining(tiny_config(pre_ln=True)))
    layer = model.layers[0]
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        h = x + _hand_attention(layer, F.layer_norm(x, (32,), layer.attn_norm.weight, layer.attn_norm.bias, 1e-12))
        expected = h + _hand_ffn(layer, F.layer_norm(h, (32,), layer.ffn_norm.weight, layer.ffn_norm.bias, 1e-12))
        torch.testing.assert_close(layer(x, None), expected, rtol=1e-5, atol=1e-5)


def test_a_post_ln_layer_is_the_formula_by_hand_bit_for_bit():
    """The default (post-LN) path computes exactly what it did before pre_ln existed: the same operations
    in the same order, so the outputs are identical, not merely close."""
    torch.manual_seed(0)
    model = _perturbed(BertForPretraining(tiny_config()))
    layer = model.layers[0]
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        b, t, h = x.shape
        q, k, v = layer.qkv(x).view(b, t, 3, layer.num_heads, h // layer.num_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, h)
        y = layer.attn_norm(x + layer.attn_out(attended))  # the post-LN code as first written, verbatim
        expected = layer.ffn_norm(y + layer.ffn_out(F.gelu(layer.ffn_in(y))))
        assert torch.equal(layer(x, None), expected)
        torch.testing.assert_close(expected, layer.ffn_norm(y + _hand_ffn(layer, y)), rtol=1e-5, atol=1e-5)


def test_pre_ln_adds_only_a_final_norm_and_an_old_model_config_loads_as_post_ln():
    post, pre = BertForPretraining(tiny_config()), BertForPretraining(tiny_config(pre_ln=True))
    extra = set(pre.state_dict()) - set(post.state_dict())
    assert extra == {"final_norm.weight", "final_norm.bias"} and set(post.state_dict()) <= set(pre.state_dict())
    stored = {key: value for key, value in tiny_config().__dict__.items() if key != "pre_ln"}  # a model_config of before
    assert BertConfig(**stored).pre_ln is False
    BertForPretraining(BertConfig(**stored)).load_state_dict(post.state_dict())  # strict: the same parameters


def test_pre_ln_all_layers_ends_with_the_final_norm_as_the_plain_encode():
    torch.manual_seed(0)
    model = _perturbed(BertForPretraining(tiny_config(pre_ln=True)))
    ids, types, mask, _, _ = make_batch(model.config)
    with torch.no_grad():
        states = model.encode(ids, types, mask, all_layers=True)
        last = model.encode(ids, types, mask)
        assert len(states) == model.config.num_layers + 1
        assert torch.equal(states[-1], last)
        assert torch.equal(states[0], model.embeddings(ids, types))
        raw = model.layers[1](states[1], model_mask(mask))  # layer N before the final LayerNorm
        torch.testing.assert_close(states[-1], model.final_norm(raw))


def model_mask(mask: torch.Tensor) -> torch.Tensor:
    from bertstudy.model import additive_mask

    return additive_mask(mask.bool()[:, None, None, :], torch.float32)


def test_a_pre_ln_model_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(pre_ln=True, dropout=0.0))
    ids, types, mask, mlm_labels, nsp_labels = make_batch(model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        out = model(ids, types, mask, mlm_labels, nsp_labels)
        first = first if first is not None else out.loss.item()
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.5 * first
