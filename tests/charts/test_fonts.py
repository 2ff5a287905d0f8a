"""fonts.py: the CJK font matplotlib will draw with covers every Chinese label; English fallback."""

import copy

import pytest
from matplotlib import font_manager

from bertstudy.charts import fonts
from bertstudy.charts.fonts import (
    LABELS,
    NO_CJK_FONT_ENV,
    TextStyle,
    chinese_label_text,
    choose_text_style,
    find_cjk_font,
    literal_text,
    missing_characters,
)

NO_FONT_HINT = "no CJK font found: install fonts-noto-cjk (`make system-deps`; `make test` does it)"


@pytest.fixture(scope="module")
def cjk_font():
    font = find_cjk_font(environ={})
    assert font is not None, NO_FONT_HINT
    return font


def test_every_chinese_label_character_is_in_the_chosen_faces_cmap(cjk_font):
    text = chinese_label_text()
    assert "准" in text and "率" in text and "{" not in text
    for path, face_index in cjk_font.faces:
        # Each character checked one by one against the cmap fontTools reads from the very file
        # (and .ttc face) matplotlib resolves, for the regular and the bold weight.
        cmap = fonts.font_cmap(path, face_index)
        for key, (chinese, _) in LABELS.items():
            for ch in literal_text(chinese):
                assert ch.isspace() or ord(ch) in cmap, f"{key}: {ch!r} missing from {path}#{face_index}"


def test_ttc_collection_uses_the_simplified_chinese_face(cjk_font):
    from fontTools.ttLib import TTFont

    for path, face_index in cjk_font.faces:
        if path.lower().endswith(".ttc"):
            with TTFont(path, fontNumber=face_index, lazy=True) as face:
                assert face["name"].getDebugName(1) == cjk_font.family
    if cjk_font.family.startswith(("Noto", "Source Han")):
        assert cjk_font.family.endswith(("SC", "CN"))


def test_bilingual_labels_join_chinese_and_english(cjk_font):
    style = TextStyle(lang="both", cjk_font=cjk_font)
    assert style.text("mlm_acc") == "MLM 准确率 / MLM accuracy"
    assert style.text("pearson", r=0.98765) == "皮尔逊 r = 0.988 / Pearson r = 0.988"
    # Identical halves are not repeated.
    assert style.text("mae", mae=0.01) == "MAE=0.0100"
    assert style.rc_params()["font.family"][0] == cjk_font.family


def test_a_font_without_chinese_glyphs_is_refused():
    # DejaVu Sans ships with matplotlib: installed, but it has no Chinese glyphs.
    assert find_cjk_font(["DejaVu Sans"], environ={}) is None
    latin = find_cjk_font(["DejaVu Sans"], required_text="MLM accuracy", environ={})
    assert latin is not None and latin.family == "DejaVu Sans"
    path, index = latin.faces[0]
    assert missing_characters("准确率 ok", path, index) == "准率确"


def test_empty_candidate_list_falls_back_to_english_with_one_line_warning():
    style = choose_text_style("both", candidates=(), environ={})
    assert style.lang == "en" and style.cjk_font is None
    assert style.text("mlm_acc") == "MLM accuracy"
    assert style.warning.startswith("warning:") and "\n" not in style.warning
    assert "fonts-noto-cjk" in style.warning
    assert all(not any("\u4e00" <= ch <= "\u9fff" for ch in style.text(k, **_dummy_values(k))) for k in LABELS)


def test_environment_variable_forces_the_fallback():
    style = choose_text_style("both", environ={NO_CJK_FONT_ENV: "1"})
    assert style.lang == "en" and NO_CJK_FONT_ENV in style.warning
    assert find_cjk_font(environ={NO_CJK_FONT_ENV: "yes"}) is None


def test_english_requested_needs_no_font_and_gives_no_warning():
    style = choose_text_style("en", environ={})
    assert style.lang == "en" and style.warning is None
    assert style.rc_params() == {"font.family": ["sans-serif"]}
    with pytest.raises(ValueError):
        choose_text_style("zh")
    with pytest.raises(ValueError):
        TextStyle(lang="both", cjk_font=None)


def test_font_installed_after_matplotlibs_cache_was_built_is_found(cjk_font):
    # A manager whose cache predates the font install: it lists only DejaVu.
    stale = copy.copy(font_manager.fontManager)
    stale.ttflist = [e for e in font_manager.fontManager.ttflist if e.name.startswith("DejaVu")]
    found = find_cjk_font([cjk_font.family], manager=stale, environ={})
    assert found is not None and found.family == cjk_font.family
    assert [p for p, _ in found.faces] == [p for p, _ in cjk_font.faces]


def _dummy_values(key):
    import string

    names = [f for _, f, _, _ in string.Formatter().parse(LABELS[key][1]) if f]
    return {name: 1 for name in names}
