"""The transformer path: configs/knowfree_trf.cfg with a tiny random BERT."""

from pathlib import Path

import pytest
import spacy
from spacy.util import fix_random_seed, load_config, load_model_from_config

from _examples import EXTENSION, FLAT, make_examples, span_tuples

pytest.importorskip("spacy_transformers")
transformers = pytest.importorskip("transformers")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "knowfree_trf.cfg"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with a character vocabulary."""
    path = tmp_path_factory.mktemp("tiny-bert")
    chars = sorted({c for text, _ in FLAT for c in text} | set("北京大学张三李四"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), tokenize_chinese_chars=True)
    tokenizer.save_pretrained(str(path))
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    transformers.BertModel(config).save_pretrained(str(path))
    return path


def test_knowfree_trains_on_a_transformer_encoder(tiny_bert, tmp_path):
    config = load_config(CONFIG, overrides={"vars.encoder": str(tiny_bert)}, interpolate=True)
    config["components"]["knowfree"]["model"]["hidden_width"] = 40
    config["components"]["knowfree"]["model"]["grid_width"] = 40
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["transformer", "knowfree"]
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.001
    losses = []
    for _ in range(40):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["knowfree"])
    assert losses[-1] < losses[0] / 5
    assert nlp.get_pipe("knowfree").cfg["head_lr_scale"] == 50.0
    docs = list(nlp.pipe([text for text, _ in FLAT]))
    predicted = [span_tuples(d) for d in docs]
    gold = {(i, start, end, label) for i, (_, spans) in enumerate(FLAT) for start, end, label in spans}
    found = {(i, *span) for i, spans in enumerate(predicted) for span in spans}
    assert found, "the trained pipeline predicts no span"
    assert {label for *_, label in found} <= {"PER", "LOC", "ORG"}  # never an extension label
    assert len(found & gold) >= len(gold) // 2, (sorted(found), sorted(gold))
    nlp.to_disk(tmp_path / "trf")
    loaded = spacy.load(tmp_path / "trf")
    for doc, text in zip(docs, (text for text, _ in FLAT)):
        assert span_tuples(loaded(text)) == span_tuples(doc)
