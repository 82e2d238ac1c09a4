"""displaCy rendering of a pipeline's spans next to the gold and extension spans."""

import html
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc

from ..pipeline_inputs import fresh_copies, require_knowfree

#: Colours cycled over the labels (displaCy's default palette has none for
#: dataset labels such as PER.NAM or ENT:人名).
PALETTE = (
    "#7aecec",
    "#bfeeb7",
    "#feca74",
    "#ff9561",
    "#aa9cfc",
    "#c887fb",
    "#9cc9cc",
    "#ffeb80",
    "#ff8197",
    "#f0d0ff",
    "#bfe1d9",
    "#e4e7d2",
    "#ddd6fe",
    "#fde68a",
    "#a7f3d0",
    "#fecaca",
)


def label_colors(labels: Iterable[str]) -> Dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def escaped_spans(doc: Doc, key: str) -> Dict[str, Any]:
    """displaCy's manual span input for ``doc.spans[key]`` with the labels and
    the title HTML-escaped (displaCy escapes the tokens, not the labels)."""
    data = displacy.parse_spans(doc, {"spans_key": key})
    for span in data["spans"]:
        span["label"] = html.escape(str(span["label"]))
    if data.get("title"):
        data["title"] = html.escape(str(data["title"]))
    return data


def render_predictions(
    nlp: Language,
    docs: Sequence[Doc],
    *,
    component: Optional[str] = None,
    gold: bool = True,
    extensions: bool = True,
    limit: Optional[int] = 30,
    title: str = "knowfree predictions",
) -> str:
    """One HTML page: for each doc, the predicted spans of the knowfree
    component and, when asked and present, the doc's gold spans (same key)
    and extension spans.

    docs (Sequence[Doc]): evaluation docs; their annotations are only shown,
        the pipeline predicts from the text.
    limit (Optional[int]): render only the first ``limit`` docs (None: all).
    """
    knowfree = require_knowfree(nlp, component)
    docs = list(docs)[:limit] if limit is not None else list(docs)
    predicted = list(nlp.pipe(fresh_copies(nlp, docs)))
    key, ext_key = knowfree.key, knowfree.extension_key
    labels: List[str] = list(knowfree.labels)
    for doc in docs:
        labels += [s.label_ for s in doc.spans.get(key, [])]
        if extensions:
            labels += [s.label_ for s in doc.spans.get(ext_key, [])]
    options = {"colors": {html.escape(label): color for label, color in label_colors(labels).items()}}
    sections = []
    correct = n_gold = n_pred = 0
    for i, (source, doc) in enumerate(zip(docs, predicted)):
        rows: List[Tuple[str, Doc, str]] = [("predicted", doc, key)]
        pred = {(s.start, s.end, s.label_) for s in doc.spans.get(key, [])}
        summary = f"{len(pred)} predicted"
        if gold and key in source.spans:
            truth = {(s.start, s.end, s.label_) for s in source.spans[key]}
            hits = len(pred & truth)
            correct, n_gold, n_pred = correct + hits, n_gold + len(truth), n_pred + len(pred)
            summary += f", {len(truth)} gold, {hits} correct"
            rows.append(("gold", source, key))
        if extensions and ext_key in source.spans:
            rows.append(("extension", source, ext_key))
        parts = [f"<h3>#{i + 1} <small>({html.escape(summary)})</small></h3>"]
        for name, row_doc, row_key in rows:
            with warnings.catch_warnings():  # W117: a row without spans is fine here
                warnings.filterwarnings("ignore", message=r"\[W117\]")
                body = displacy.render(
                    escaped_spans(row_doc, row_key),
                    style="span",
                    manual=True,
                    page=False,
                    jupyter=False,
                    options=options,
                )
            parts.append(f'<div class="row"><div class="name">{html.escape(name)}</div>{body}</div>')
        sections.append("<section>" + "".join(parts) + "</section>")
    total = f"{len(docs)} docs"
    if gold and n_gold:
        p = correct / n_pred if n_pred else 0.0
        r = correct / n_gold
        f = 2 * p * r / (p + r) if p + r else 0.0
        total += f"; on these docs P {100 * p:.1f}, R {100 * r:.1f}, F1 {100 * f:.1f}"
    return _PAGE.format(title=html.escape(title), summary=html.escape(total), body="\n".join(sections))


_PAGE = """<!DOCTYPE html>
<html lang="zh">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 2em; }}
section {{ border-bottom: 1px solid #ddd; padding-bottom: 1em; }}
.row {{ display: flex; align-items: flex-start; }}
.name {{ width: 7em; flex-shrink: 0; padding-top: 1.2em; color: #666; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{summary}</p>
{body}
</body>
</html>
"""
