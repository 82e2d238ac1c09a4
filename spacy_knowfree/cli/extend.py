"""``knowfree extend``: add extension spans (pipeline 1) to a training DocBin."""
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional

import spacy
import typer
from spacy.language import Language
from spacy.tokens import DocBin
from tqdm import tqdm
from wasabi import msg

from ..errors import Errors
from ._app import app

EXTENSION_SPANS_KEY = "knowfree_ext"


def build_knowledge_pipeline(
    config_path: Optional[Path], families: List[str], user_dict: Optional[Path]
) -> Language:
    """The pipeline that writes extension spans: a user config (e.g. an ``llm``
    component with the spacy-knowfree tasks) or the offline jieba lexicon."""
    if config_path is not None:
        config = spacy.util.load_config(config_path, interpolate=True)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        nlp.initialize()
        return nlp
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "knowfree_lexicon",
        config={
            "spans_key": EXTENSION_SPANS_KEY,
            "families": families,
            "user_dict": str(user_dict) if user_dict else None,
        },
    )
    return nlp


@app.command("extend")
def extend_cli(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training .spacy DocBin."),
    output_path: Path = typer.Argument(..., dir_okay=False, help="Fused .spacy DocBin to write."),
    config_path: Optional[Path] = typer.Option(
        None, "--config", "-c", exists=True, dir_okay=False,
        help="spaCy config of the knowledge pipeline (e.g. an llm component with "
        "spacy-knowfree tasks). Default: the offline jieba lexicon."),
    families: List[str] = typer.Option(
        ["SEG", "POS", "ENT"], "--family", help="Lexicon families to add (repeatable)."),
    user_dict: Optional[Path] = typer.Option(
        None, "--user-dict", exists=True, dir_okay=False, help="Lexicon: jieba user dictionary."),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per pipeline batch."),
) -> None:
    """Run a knowledge source over the training docs and keep what it writes to
    doc.spans["knowfree_ext"] (the extension spans the knowfree component
    trains on with weight alpha). Gold spans, tokens and user data are kept."""
    start = time.time()
    nlp = build_knowledge_pipeline(config_path, families, user_dict)
    msg.info(f"Knowledge pipeline: {nlp.pipe_names}")
    docbin = DocBin().from_disk(input_path)
    docs = list(docbin.get_docs(nlp.vocab))
    if not docs:
        msg.fail(Errors.KF008.format(path=input_path), exits=1)
    out = DocBin(store_user_data=True)
    per_label: Counter = Counter()
    for doc in tqdm(nlp.pipe(docs, batch_size=batch_size), total=len(docs), desc="extend",
                    unit="doc"):
        group = doc.spans.get(EXTENSION_SPANS_KEY)
        if group is None:
            doc.spans[EXTENSION_SPANS_KEY] = []
        per_label.update(span.label_ for span in doc.spans[EXTENSION_SPANS_KEY])
        out.add(doc)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(output_path)
    families_count: Counter = Counter()
    for label, count in per_label.items():
        families_count[label.split(":", 1)[0]] += count
    msg.good(f"Wrote {len(docs)} docs to {output_path} in {time.time() - start:.1f}s")
    msg.table(sorted(families_count.items()), header=("family", "spans"), divider=True)
    top = per_label.most_common(15)
    msg.table(top, header=("label (top 15)", "spans"), divider=True)
