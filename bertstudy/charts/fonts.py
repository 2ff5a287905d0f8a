"""Bilingual chart text that never renders as tofu boxes.

Every label the charts show lives in one table, `LABELS` (Chinese, English). `choose_text_style`
looks for an installed CJK font through matplotlib's own font manager (so the face we check is
the face matplotlib will draw with), verifies with fontTools that the font's character map covers
every Chinese character of that table, and otherwise falls back to English-only labels with a
one-line warning. Setting CBC_NO_CJK_FONT=1 forces the fallback (tests, or a user who wants it).
"""

from __future__ import annotations

import functools
import os
import string
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from matplotlib import font_manager

NO_CJK_FONT_ENV = "CBC_NO_CJK_FONT"  # set to 1/true/yes to force English-only labels
LANGS = ("both", "en")

# Families that cover Simplified Chinese, best first. For .ttc collections (Noto/Source Han ship
# JP, KR, SC, TC, HK faces in one file) the SC family name selects the SC face, whose glyph
# shapes are the mainland forms; matplotlib >= 3.10 records each face's index in the collection.
CJK_FONT_CANDIDATES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans SC",
    "Noto Serif CJK SC",
    "AR PL UMing CN",
    "Droid Sans Fallback",
)
# Latin glyphs matplotlib always has; listed after the CJK family so a glyph the CJK font lacks
# (math symbols, the unicode minus) falls back to it glyph by glyph.
LATIN_FAMILY = "DejaVu Sans"

# key -> (Chinese, English). Templates may hold str.format fields ({r:.3f}); only the literal
# text is Chinese and needs glyphs. Keep every user-visible chart string here.
LABELS: dict[str, tuple[str, str]] = {
    "step": ("训练步数", "training step"),
    "step_log": ("训练步数（对数）", "training step (log scale)"),
    "mlm_acc": ("MLM 准确率", "MLM accuracy"),
    "nsp_acc": ("NSP 准确率", "NSP accuracy"),
    "train": ("训练", "train"),
    "train_smoothed": ("训练（{window} 点滑动平均）", "train ({window}-point moving average)"),
    "held_out": ("验证集", "held-out"),
    "chance": ("随机水平 50%", "chance 50%"),
    "loss": ("损失", "loss"),
    "mlm_loss": ("MLM 损失", "MLM loss"),
    "nsp_loss": ("NSP 损失", "NSP loss"),
    "lr": ("学习率", "learning rate"),
    "no_data": ("无数据", "no data"),
    "no_held_out": ("无验证集数据", "no held-out data"),
    "training_title": ("训练曲线", "Training curves"),
    "correlation_title": ("训练步数与{metric}", "Training steps vs {metric}"),
    "observed": ("观测值", "observed"),
    "residual": ("残差", "residual"),
    "residual_trend": ("残差滑动平均（窗口 {window}）", "residual moving average (window {window})"),
    "residuals_title": ("各曲线残差", "Residuals of each fit"),
    "fit_title": ("曲线拟合", "Curve fits"),
    "curve_linear": ("线性", "linear"),
    "curve_log_linear": ("对数线性", "log-linear"),
    "curve_power_saturating": ("饱和幂律", "saturating power"),
    "fit_stats": ("R²={r2:.3f} AIC={aic:.0f}", "R²={r2:.3f} AIC={aic:.0f}"),
    "chosen": ("选定", "chosen"),
    "fit_failed": ("拟合失败", "fit failed"),
    "too_short": ("数据点太少，无法拟合", "too few points to fit"),
    "pearson": ("皮尔逊 r = {r:.3f}", "Pearson r = {r:.3f}"),
    "spearman": ("斯皮尔曼 ρ = {rho:.3f}", "Spearman ρ = {rho:.3f}"),
    "comparison_title": ("多次训练对比", "Run comparison"),
    "single_run_title": ("单次训练汇总（用 --compare 对比多次训练）", "One run's summary (use --compare to compare runs)"),
    "this_run": ("本次训练，{steps} 步", "this run, {steps} steps"),
    "band_clipped": ("预测区间超出图边缘（已截断）", "band runs past the chart's edge (cut)"),
    "summary_title": ("汇总指标", "Summary"),
    "mean_mlm": ("平均训练 MLM\n准确率（全部位置）", "mean training MLM\nacc. (all positions)"),
    "max_mlm": ("最高训练 MLM\n准确率（全部位置）", "max training MLM\nacc. (all positions)"),
    "final_mlm": ("最终训练 MLM\n准确率（全部位置）", "final training MLM\nacc. (all positions)"),
    "final_eval_mask": ("最终验证集\n[MASK] 准确率", "final held-out\n[MASK] accuracy"),
    "best_eval_mask": ("最高验证集\n[MASK] 准确率", "best held-out\n[MASK] accuracy"),
    "mlm_all_positions": ("MLM 准确率（全部位置）", "MLM accuracy (all positions)"),
    "train_mlm_all": ("训练 MLM 准确率（全部位置）", "training MLM accuracy (all positions)"),
    "eval_points": ("{n} 个验证点", "{n} held-out points"),
    "final_loss": ("最终训练损失", "final training loss"),
    "accuracy": ("准确率", "accuracy"),
    "loss_title": ("损失分析", "Loss analysis"),
    "raw": ("原始", "raw"),
    "smoothed": ("平滑（窗口 {window}）", "smoothed (window {window})"),
    "decrease_title": ("损失下降", "Loss decrease"),
    "initial": ("初始", "initial"),
    "final": ("最终", "final"),
    "decrease_note": ("下降 {drop:.3f}（{pct:.1f}%）", "down {drop:.3f} ({pct:.1f}%)"),
    "log_view_title": ("对数步数视角", "Log-step view"),
    "forecast_title": ("预测检验", "Forecast check"),
    "fit_part": ("拟合部分", "fitted part"),
    "held_part": ("待预测部分", "predicted part"),
    "split": ("切分点 {step}", "split at {step}"),
    "band": ("95% 预测区间", "95% prediction band"),
    "mae": ("MAE={mae:.4f}", "MAE={mae:.4f}"),
    "points": ("{n} 个数据点", "{n} points"),
    "train_eval_points": ("{n} 个训练点，{m} 个验证点", "{n} training points, {m} held-out points"),
    "forecast_points": ("{n} 个数据点（拟合 {fit} 个，预测 {test} 个）", "{n} points ({fit} fitted, {test} predicted)"),
    "edge_mean": ("首/末 {k} 点均值", "mean of first/last {k} points"),
    "edge_points": ("首/末点 {first:.3f} → {last:.3f}", "first/last point {first:.3f} → {last:.3f}"),
    "eval_loss": ("验证集 MLM 损失", "held-out MLM loss"),
    "headline": ("总步数 {steps:,}，皮尔逊 r{r_of} = {r:.3f}，选定曲线{r_of}：{best}",
                 "{steps:,} steps, Pearson r{r_of} = {r:.3f}, chosen curve{r_of}: {best}"),
    "no_positive_steps": ("无正步数", "no positive steps"),
    "curve_phases": ("阶段模型", "phase model"),
    "phase_fit": ("阶段模型（对数步数分段线性）", "phase model (piecewise linear in ln step)"),
    "plateau_span": ("平台期：第 {start} 至 {end} 步，水平 {level:.3f}", "plateau: steps {start} to {end}, level {level:.3f}"),
    "final_flat": ("末段平坦：自第 {start} 步起，水平 {level:.3f}（其后尚无第二次上升）",
                   "flat end: from step {start}, level {level:.3f} (no second rise after it yet)"),
    "plateau_ci": ("平台起止的 95% 区间", "95% interval of the plateau's start and end"),
    # metric names (accuracy by position kind) and the predicted no-context shortcut
    "metric_mlm_acc": ("MLM 准确率", "MLM accuracy"),
    "metric_eval_mlm_acc": ("验证集 MLM 准确率（全部位置）", "held-out MLM accuracy (all positions)"),
    "metric_mask_acc": ("训练 [MASK] 准确率", "training [MASK] accuracy"),
    "metric_eval_mask_acc": ("验证集 [MASK] 准确率", "held-out [MASK] accuracy"),
    "metric_random_acc": ("训练随机替换位置准确率", "training accuracy at random positions"),
    "metric_eval_random_acc": ("验证集随机替换位置准确率", "held-out accuracy at random positions"),
    "metric_unchanged_acc": ("训练未改变位置准确率", "training accuracy at unchanged positions"),
    "metric_eval_unchanged_acc": ("验证集未改变位置准确率", "held-out accuracy at unchanged positions"),
    "kinds_title": ("按位置类型的 MLM 准确率", "MLM accuracy by position kind"),
    "kind_mask_acc": ("[MASK] 位置", "[MASK]"),
    "kind_random_acc": ("随机替换位置", "random"),
    "kind_unchanged_acc": ("未改变位置", "unchanged"),
    "kind_mlm_acc": ("全部位置", "all positions"),
    "kind_label": ("{kind}（{source}）", "{kind} ({source})"),
    "shortcut_line": ("捷径预测：{level:.3f}\n（{what}）", "predicted shortcut: {level:.3f}\n({what})"),
    "shortcut_mask_level": ("[MASK] 处答最高频字", "top character at [MASK]"),
    "shortcut_overall_level": ("[MASK] 处答最高频字，其余照抄", "top character at [MASK], copy elsewhere"),
    "shortcut_random_level": ("照抄随机字", "copy the random character"),
    "shortcut_unchanged_level": ("照抄原字", "copy the character"),
    # several pretraining seeds: one band per held-out accuracy
    "seeds_title": ("{n} 个预训练种子：验证集准确率（同一验证实例）", "{n} pretraining seeds: held-out accuracy (the same held-out instances)"),
    "seeds_band": ("种子间最小–最大", "min-max across seeds"),
    "seeds_mean": ("种子均值", "mean of the seeds"),
    "seed_run": ("种子 {seed}", "seed {seed}"),
    # downstream.png (downstream_chart.py)
    "ds_title": ("下游任务得分与预训练进度（{mode}）", "Downstream scores across pretraining ({mode})"),
    "ds_probe": ("线性探针", "linear probe"),
    "ds_finetune": ("微调", "fine-tuning"),
    "ds_cws": ("中文分词 词级 F1", "word segmentation F1"),
    "ds_sentiment": ("情感分类 准确率", "sentiment accuracy"),
    "ds_step": ("训练步数（对数轴）", "training step (log axis)"),
    "ds_mlm": ("验证集 MLM 准确率", "held-out MLM accuracy"),
    "ds_model": ("本模型的检查点", "this model's checkpoints"),
    "ds_jieba": ("jieba 分词", "jieba"),
    "ds_char_ngram_logreg": ("字 n-gram 逻辑回归", "char n-gram logistic regression"),
    "ds_majority": ("多数类", "majority class"),
    "ds_ner": ("命名实体识别 实体级 F1", "named-entity F1"),
    "ds_identity_control": ("字本身（对照探针）", "character identity (control)"),
    "ds_window_logreg": ("前后各 2 字逻辑回归", "+-2 character window regression"),
    "ds_step0": ("未训练模型（第 0 步）", "untrained model (step 0)"),
    "ds_corr": ("皮尔逊 r = {r}，斯皮尔曼 ρ = {rho}（n = {n}）", "Pearson r = {r}, Spearman ρ = {rho} (n = {n})"),
    "ds_partial": ("给定 ln(步数) 的偏相关 r = {r}（n = {n}，未学习的检查点合为一个）",
                   "partial r given ln(step) = {r} (n = {n}, pre-learning checkpoints as one)"),
    "ds_no_points": ("无检查点得分", "no checkpoint scores"),
    "ds_layers_title": ("各层线性探针得分（按层与训练步）", "probe score by layer and step"),
    "ds_layer": ("层（0 = 嵌入层输出）", "layer (0 = embedding output)"),
    "ds_checkpoint": ("检查点（训练步）", "checkpoint (training step)"),
    "ds_best_layer": ("该检查点得分最高的层", "best layer of the checkpoint"),
    "ds_no_layers": ("无逐层得分", "no per-layer scores"),
}


@dataclass(frozen=True)
class CjkFont:
    family: str  # the family name matplotlib resolves, e.g. "Noto Sans CJK SC"
    faces: tuple[tuple[str, int], ...]  # (file, face index in a .ttc) for the normal and bold weights


@dataclass(frozen=True)
class TextStyle:
    """Which language the labels use and which font draws them (None: matplotlib's default)."""

    lang: str = "en"  # "both" = "中文 / English", "en" = English only
    cjk_font: CjkFont | None = None  # required when lang == "both"
    warning: str | None = None  # the one-line fallback warning, printed by the script
    labels: Mapping[str, tuple[str, str]] = field(default_factory=lambda: LABELS, repr=False)

    def __post_init__(self):
        if self.lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}, got {self.lang!r}")
        if self.lang == "both" and self.cjk_font is None:
            raise ValueError("bilingual labels need a CJK font")

    def text(self, key: str, sep: str = " / ", **values) -> str:
        """The label in the style's language(s), halves joined by `sep` ("\n" for narrow places); a
        value given as a (Chinese, English) pair, e.g. `LABELS["curve_linear"]`, fills each half
        in its own language."""
        chinese, english = self.labels[key]
        english = english.format(**{k: v[1] if isinstance(v, tuple) else v for k, v in values.items()})
        if self.lang == "en":
            return english
        chinese = chinese.format(**{k: v[0] if isinstance(v, tuple) else v for k, v in values.items()})
        return chinese if chinese == english else f"{chinese}{sep}{english}"

    def rc_params(self) -> dict:
        """matplotlib rcParams to create a figure under (text objects keep the font they were made with)."""
        if self.cjk_font is None or self.lang == "en":
            return {"font.family": ["sans-serif"]}
        return {"font.family": [self.cjk_font.family, LATIN_FAMILY]}


def literal_text(template: str) -> str:
    """The literal characters of a str.format template (format fields removed)."""
    return "".join(literal for literal, *_ in string.Formatter().parse(template))


def chinese_label_text(labels: Mapping[str, tuple[str, str]] = LABELS) -> str:
    """Every distinct character the Chinese labels draw (what a CJK font must cover)."""
    return "".join(sorted({ch for chinese, _ in labels.values() for ch in literal_text(chinese)}))


@functools.lru_cache(maxsize=16)
def font_cmap(path: str, face_index: int = 0) -> frozenset[int]:
    """Code points the given face maps to a glyph, read with fontTools (ships with matplotlib)."""
    from fontTools.ttLib import TTFont

    kwargs = {"fontNumber": face_index} if path.lower().endswith((".ttc", ".otc")) else {}
    with TTFont(path, lazy=True, **kwargs) as font:
        return frozenset(font.getBestCmap() or {})


def missing_characters(text: str, path: str, face_index: int = 0) -> str:
    """Characters of `text` (whitespace aside) that the face has no glyph for."""
    cmap = font_cmap(str(path), int(face_index))
    return "".join(sorted({ch for ch in text if not ch.isspace() and ord(ch) not in cmap}))


def _resolve_faces(manager, family: str) -> tuple[tuple[str, int], ...] | None:
    """The files matplotlib will draw `family` with at normal and bold weight, or None if absent."""
    if not any(entry.name == family for entry in manager.ttflist):
        return None
    faces = []
    for weight in ("normal", "bold"):
        try:
            found = manager.findfont(font_manager.FontProperties(family=family, weight=weight),
                                     fallback_to_default=False, rebuild_if_missing=False)
        except ValueError:
            return None
        faces.append((str(found), int(getattr(found, "face_index", 0))))
    return tuple(dict.fromkeys(faces))


def _add_unknown_system_fonts(manager) -> None:
    """Register system font files the (possibly older) matplotlib font cache does not list yet.

    matplotlib builds its cache once; a font installed afterwards (the README's set-up installs
    fonts-noto-cjk) would otherwise stay invisible until the cache is deleted.
    """
    known = {os.path.realpath(entry.fname) for entry in manager.ttflist}
    for path in font_manager.findSystemFonts():
        if os.path.realpath(path) not in known:
            try:
                manager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue  # an unreadable font file is not our problem; keep looking


def find_cjk_font(candidates: Iterable[str] = CJK_FONT_CANDIDATES, required_text: str | None = None,
                  manager=None, environ: Mapping[str, str] | None = None) -> CjkFont | None:
    """The first candidate family installed whose faces cover `required_text` (default: every
    Chinese label), or None. CBC_NO_CJK_FONT=1 in `environ` (default os.environ) forces None."""
    environ = os.environ if environ is None else environ
    if environ.get(NO_CJK_FONT_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    candidates = tuple(candidates)
    if not candidates:
        return None
    manager = font_manager.fontManager if manager is None else manager
    required_text = chinese_label_text() if required_text is None else required_text
    for attempt in range(2):
        for family in candidates:
            faces = _resolve_faces(manager, family)
            if faces and not any(missing_characters(required_text, path, index) for path, index in faces):
                return CjkFont(family=family, faces=faces)
        if attempt == 0:
            _add_unknown_system_fonts(manager)
    return None


def choose_text_style(lang: str = "both", candidates: Iterable[str] = CJK_FONT_CANDIDATES,
                      manager=None, environ: Mapping[str, str] | None = None) -> TextStyle:
    """Bilingual labels with a covering CJK font, or English-only with a one-line warning."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    if lang == "en":
        return TextStyle(lang="en")
    candidates = tuple(candidates)
    font = find_cjk_font(candidates, manager=manager, environ=environ)
    if font is not None:
        return TextStyle(lang="both", cjk_font=font)
    environ = os.environ if environ is None else environ
    if environ.get(NO_CJK_FONT_ENV):
        why = f"{NO_CJK_FONT_ENV} is set"
    else:
        why = f"no installed font covers the Chinese labels (tried: {', '.join(candidates) or 'none'})"
    warning = (f"warning: {why}; charts use English-only labels "
               "(install fonts-noto-cjk, e.g. `make system-deps`, for bilingual ones)")
    return TextStyle(lang="en", warning=warning)
