"""Export our BertForPretraining as a folder that transformers loads (`BertForPreTraining` and
`BertTokenizer.from_pretrained(folder)`), load such a folder back into our own model (no
transformers needed at run time). Filling in [MASK] characters is fill_mask.py's.

The folder holds config.json, model.safetensors (transformers' parameter names; the MLM decoder is
tied to the word embeddings so only the embeddings are stored), vocab.txt and tokenizer_config.json.
It is written into a temporary sibling folder and renamed into place, so a crash never leaves a
half-written export.

A pre-LN model (`BertConfig.pre_ln`) is refused (`check_exportable`): transformers'
BertForPreTraining applies each LayerNorm after the residual sum and has no final LayerNorm, and no
choice of its weights computes LN before the sub-layer, so any mapping would change the outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from bertstudy.base.atomic_io import atomic_write_json, atomic_write_text, atomic_writer, read_json, read_text_utf8
from bertstudy.base.errors import BadInputError, StudyError, UsageError
from bertstudy.base.run_files import EXPORT_DIR_NAME, HISTORY_NAME
from bertstudy.model import BertConfig, BertForPretraining

EXPORT_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")
MASK, CLS, SEP, UNK, PAD = "[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]"

# our name -> transformers' name, for every parameter outside the encoder layers
_TOP_LEVEL_NAMES = {
    "embeddings.word.weight": "bert.embeddings.word_embeddings.weight",
    "embeddings.position.weight": "bert.embeddings.position_embeddings.weight",
    "embeddings.segment.weight": "bert.embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
    "pooler.weight": "bert.pooler.dense.weight",
    "pooler.bias": "bert.pooler.dense.bias",
    "mlm_dense.weight": "cls.predictions.transform.dense.weight",
    "mlm_dense.bias": "cls.predictions.transform.dense.bias",
    "mlm_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm_bias": "cls.predictions.bias",
    "nsp.weight": "cls.seq_relationship.weight",
    "nsp.bias": "cls.seq_relationship.bias",
}
# per encoder layer: our module -> transformers' module (q/k/v handled apart: ours is fused)
_LAYER_NAMES = {
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_QKV = ("query", "key", "value")  # order of the three blocks inside our fused qkv projection


# --------------------------------------------------------------------------------- weights
def check_exportable(config: BertConfig) -> None:
    """A pre-LN model has no faithful transformers BERT counterpart (the module docstring): one line, exit 2."""
    if config.pre_ln:
        raise UsageError("a pre-LN model (--pre-ln) cannot be exported to transformers: its BertForPreTraining is "
                         "post-LN only (LayerNorm after each residual sum, no final LayerNorm), so the export "
                         "would compute other outputs; use the run's final model file instead")


def to_transformers_state_dict(model: BertForPretraining) -> dict[str, torch.Tensor]:
    """Our parameters under transformers' BertForPreTraining names (fp32, contiguous, CPU)."""
    check_exportable(model.config)
    ours = {name: tensor.detach().float().cpu() for name, tensor in model.state_dict().items()}
    theirs = {hf: ours[name].clone() for name, hf in _TOP_LEVEL_NAMES.items()}
    for index in range(model.config.num_layers):
        prefix, hf_prefix = f"layers.{index}.", f"bert.encoder.layer.{index}."
        for ours_module, hf_module in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                theirs[f"{hf_prefix}{hf_module}.{kind}"] = ours[f"{prefix}{ours_module}.{kind}"].clone()
        for kind in ("weight", "bias"):
            for name, block in zip(_QKV, ours[f"{prefix}qkv.{kind}"].chunk(3, dim=0)):
                theirs[f"{hf_prefix}attention.self.{name}.{kind}"] = block.contiguous().clone()
    return theirs


def from_transformers_state_dict(theirs: dict[str, torch.Tensor], config: BertConfig, source="model.safetensors"):
    """Inverse of to_transformers_state_dict; a missing tensor is a BadInputError naming `source`."""

    def take(name: str) -> torch.Tensor:
        if name not in theirs:
            raise BadInputError(source, f"tensor {name!r} is missing")
        return theirs[name].float()

    ours = {name: take(hf) for name, hf in _TOP_LEVEL_NAMES.items()}
    for index in range(config.num_layers):
        prefix, hf_prefix = f"layers.{index}.", f"bert.encoder.layer.{index}."
        for ours_module, hf_module in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                ours[f"{prefix}{ours_module}.{kind}"] = take(f"{hf_prefix}{hf_module}.{kind}")
        for kind in ("weight", "bias"):
            blocks = [take(f"{hf_prefix}attention.self.{name}.{kind}") for name in _QKV]
            ours[f"{prefix}qkv.{kind}"] = torch.cat(blocks, dim=0)
    return ours


def transformers_config(config: BertConfig) -> dict:
    """config.json content: transformers' BertConfig fields with our sizes."""
    return {
        "architectures": ["BertForPreTraining"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu",  # erf GELU, as our model
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.dropout,
        "max_position_embeddings": config.max_position,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def config_from_transformers(data: dict, source="config.json") -> BertConfig:
    if not isinstance(data, dict) or data.get("model_type") != "bert":
        raise BadInputError(source, 'not a BERT config (expected "model_type": "bert")')
    if data.get("hidden_act", "gelu") != "gelu":
        raise BadInputError(source, f"hidden_act {data.get('hidden_act')!r} is not supported (only erf \"gelu\")")
    fields = {
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "intermediate_size": "intermediate_size",
        "max_position": "max_position_embeddings",
        "type_vocab_size": "type_vocab_size",
    }
    values = {}
    for ours, hf in fields.items():
        value = data.get(hf)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInputError(source, f"{hf} must be a positive integer, got {value!r}")
        values[ours] = value
    values["layer_norm_eps"] = float(data.get("layer_norm_eps", 1e-12))
    values["pad_token_id"] = int(data.get("pad_token_id") or 0)
    values["dropout"] = float(data.get("hidden_dropout_prob", 0.1))
    try:
        return BertConfig(**values)
    except ValueError as exc:
        raise BadInputError(source, str(exc)) from None


# --------------------------------------------------------------------------------- export / load
def _check_vocab(vocab_tokens: list[str], config: BertConfig) -> None:
    if len(vocab_tokens) != config.vocab_size:
        raise UsageError(f"vocabulary has {len(vocab_tokens)} tokens but the model's vocab_size is {config.vocab_size}")
    bad = [t for t in vocab_tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise UsageError(f"vocabulary token {bad[0]!r} is empty or contains whitespace (vocab.txt is one token a line)")
    if len(set(vocab_tokens)) != len(vocab_tokens):
        raise UsageError("vocabulary has duplicate tokens")


def export_pretrained(model: BertForPretraining, vocab_tokens: list[str], out_dir) -> Path:
    """Write the transformers folder `out_dir` atomically (temp sibling folder, then rename).
    An existing folder is replaced only once the new one is complete. A pre-LN model is refused."""
    check_exportable(model.config)
    _check_vocab(list(vocab_tokens), model.config)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it owner-only (0700); the export is an ordinary folder
    try:
        atomic_write_json(staging / "config.json", transformers_config(model.config))
        with atomic_writer(staging / "model.safetensors", "wb") as handle:
            handle.write(save(to_transformers_state_dict(model), metadata={"format": "pt"}))
        atomic_write_text(staging / "vocab.txt", "".join(f"{token}\n" for token in vocab_tokens))
        atomic_write_json(
            staging / "tokenizer_config.json",
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": False,  # Chinese has no case; keeps Latin letters as in vocab.txt
                "tokenize_chinese_chars": True,  # each CJK character is its own token, as in training
                "strip_accents": None,
                "model_max_length": model.config.max_position,
                "unk_token": UNK,
                "sep_token": SEP,
                "pad_token": PAD,
                "cls_token": CLS,
                "mask_token": MASK,
            },
        )
        previous = None
        if out_dir.exists():
            previous = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, previous)
        os.replace(staging, out_dir)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StudyError(f"{out_dir}: could not write the export ({exc.strerror or exc})") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def read_vocab(path) -> list[str]:
    tokens = read_text_utf8(path).split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    for lineno, token in enumerate(tokens, start=1):
        if not token.strip():
            raise BadInputError(path, "blank token line", line=lineno)
    return tokens


def load_exported(directory) -> tuple[BertForPretraining, list[str]]:
    """Our model (eval mode, CPU) and its vocabulary from an export folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(directory, "no such export folder (expected config.json, model.safetensors, vocab.txt)")
    missing = [name for name in ("config.json", "model.safetensors", "vocab.txt") if not (directory / name).is_file()]
    if missing and (directory / EXPORT_DIR_NAME).is_dir():
        raise BadInputError(directory, f"is a training run folder, not its export; give its model folder: "
                                       f"{directory / EXPORT_DIR_NAME}")
    if missing and (directory / HISTORY_NAME).is_file():
        raise BadInputError(directory, f"is a training run folder without {EXPORT_DIR_NAME}/ yet (a run writes it "
                                       f"when it finishes); then give {directory / EXPORT_DIR_NAME}")
    if missing:
        raise BadInputError(directory, f"export folder is missing {', '.join(missing)}")
    config = config_from_transformers(read_json(directory / "config.json"), directory / "config.json")
    vocab = read_vocab(directory / "vocab.txt")
    if len(vocab) != config.vocab_size:
        raise BadInputError(directory / "vocab.txt", f"has {len(vocab)} tokens but config.json says vocab_size {config.vocab_size}")
    weights_path = directory / "model.safetensors"
    try:
        theirs = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInputError(weights_path, f"not a readable safetensors file ({exc})") from None
    model = BertForPretraining(config)
    ours = from_transformers_state_dict(theirs, config, weights_path)
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise BadInputError(weights_path, f"weights do not fit config.json ({first})") from None
    return model.eval(), vocab
