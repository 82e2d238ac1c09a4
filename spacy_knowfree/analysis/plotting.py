"""Matplotlib set-up shared by the analysis plots: a headless figure and a
font that can draw Chinese labels when the machine has one."""

import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..constants import CJK_RANGES
from ..errors import Errors, Warnings
from ..knowledge.lexicon import DEFAULT_ENTITY_TYPES, ENTITY_TYPES_EN

#: Fonts with CJK glyphs, most common first (Linux, macOS, Windows).
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "Hiragino Sans GB",
    "Arial Unicode MS",
)
#: CJK text, its punctuation and full-width forms: drawn with a CJK font.
_CJK = re.compile(f"[\u3000-\u303f{CJK_RANGES}\uff00-\uffef]")
#: jieba's Chinese entity type names (the lexicon's default) in English.
_ZH_TO_EN = {zh: ENTITY_TYPES_EN[tag] for tag, zh in DEFAULT_ENTITY_TYPES.items()}


def new_figure(width: float, height: float):
    """A matplotlib Figure drawn with the Agg backend (no display, no pyplot state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(Errors.KF400) from None
    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


@lru_cache(maxsize=1)
def cjk_font() -> Optional[str]:
    """The first installed font of ``CJK_FONTS``, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def display_labels(labels: Sequence[str]) -> Tuple[List[str], Dict[str, str], Optional[str]]:
    """Labels as they can be drawn, with the font to draw them.

    With a CJK font installed, the labels are unchanged. Without one, the
    lexicon's Chinese entity types are shown in English (``ENT:人名`` →
    ``ENT:PERSON``) and any other label with Chinese characters as
    ``FAMILY:#n``; KW400 names the replacements.
    RETURNS (Tuple[List[str], Dict[str, str], Optional[str]]): the shown
        labels, the replacements made (shown → original) and the font family.
    """
    if not any(has_cjk(label) for label in labels):
        return list(labels), {}, None
    font = cjk_font()
    if font is not None:
        return list(labels), {}, font
    shown, replaced = [], {}
    for i, label in enumerate(labels):
        if not has_cjk(label):
            shown.append(label)
            continue
        family, sep, name = label.rpartition(":")
        alias = f"{family}{sep}{_ZH_TO_EN[name]}" if name in _ZH_TO_EN else f"{family}{sep}#{i}"
        while alias in shown or alias in labels:
            alias += "'"
        shown.append(alias)
        replaced[alias] = label
    warnings.warn(
        Warnings.KW400.format(
            replaced=", ".join(f"{alias} = {label}" for alias, label in replaced.items()),
        ),
        stacklevel=2,
    )
    return shown, replaced, None


def save_figure(figure, path: Path) -> None:
    """Write the figure (PNG, or the format of the suffix), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")


def font_context(font: Optional[str]):
    """rcParams with ``font`` first in the sans-serif list (no-op for None)."""
    import matplotlib

    if font is None:
        return matplotlib.rc_context({})
    fonts: List[str] = [font, *matplotlib.rcParams["font.sans-serif"]]
    return matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": fonts})
