"""Small hand-made training sets for component tests."""

import copy
from typing import Iterable, List, Optional, Sequence, Tuple

import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed

Ann = Tuple[int, int, str]

FLAT = [
    ("张三在北京工作。", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("李四去了上海。", [(0, 2, "PER"), (4, 6, "LOC")]),
    ("王五加入了腾讯公司", [(0, 2, "PER"), (5, 9, "ORG")]),
    ("今天天气很好", []),
    ("赵六和钱七在深圳见面", [(0, 2, "PER"), (3, 5, "PER"), (6, 8, "LOC")]),
]

NESTED = [
    ("北京大学在北京", [(0, 4, "ORG"), (0, 2, "LOC"), (5, 7, "LOC")]),
    ("他在上海市第一人民医院工作", [(2, 11, "ORG"), (2, 5, "LOC")]),
    ("张三毕业于南京大学", [(0, 2, "PER"), (5, 9, "ORG"), (5, 7, "LOC")]),
    ("这里没有实体", []),
]

EXTENSION = {
    "张三在北京工作。": [(0, 2, "ENT:人名"), (3, 5, "ENT:地名"), (5, 7, "POS:VERB")],
    "李四去了上海。": [(0, 2, "ENT:人名"), (2, 3, "POS:VERB"), (4, 6, "ENT:地名")],
}


def make_examples(
    nlp: Language,
    data: Sequence[Tuple[str, List[Ann]]],
    *,
    spans_key: str = "sc",
    extension: Optional[dict] = None,
    extension_key: str = "knowfree_ext",
    synthetic: Iterable[str] = (),
) -> List[Example]:
    """Examples with gold spans (and extension spans / synthetic flags)."""
    synthetic = set(synthetic)
    examples = []
    for text, anns in data:
        reference = nlp.make_doc(text)
        reference.spans[spans_key] = [reference.char_span(s, e, label=label) for s, e, label in anns]
        if extension is not None and text in extension:
            reference.spans[extension_key] = [reference.char_span(s, e, label=label) for s, e, label in extension[text]]
        if text in synthetic:
            reference.user_data["knowfree_synthetic"] = True
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def span_tuples(doc, key: str = "sc") -> List[Ann]:
    return [(span.start_char, span.end_char, span.label_) for span in doc.spans[key]]


SMALL_MODEL = {
    "@architectures": "spacy-knowfree.KnowFREE.v1",
    "hidden_width": 64,
    "grid_width": 60,
    "n_biaffine_heads": 4,
    "n_attention_heads": 6,
    "attention_window": 3,
    "dropout": 0.1,
    "batch_rows": 64,
    "tok2vec": {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": "spacy.MultiHashEmbed.v2",
            "width": 64,
            "attrs": ["ORTH", "SHAPE"],
            "rows": [2000, 100],
            "include_static_vectors": False,
        },
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": 64,
            "window_size": 1,
            "maxout_pieces": 3,
            "depth": 2,
        },
    },
}


def char_ngram_model(**embed):
    """SMALL_MODEL with a CharNgramEmbed.v1 of the same width and rows (``embed``: its other settings)."""
    model = copy.deepcopy(SMALL_MODEL)
    model["tok2vec"]["embed"] = {
        "@architectures": "spacy-knowfree.CharNgramEmbed.v1",
        "width": 64,
        "attrs": ["ORTH", "SHAPE"],
        "rows": [2000, 100],
        **embed,
    }
    return model


def make_nlp(**config):
    nlp = spacy.blank("zh")
    nlp.add_pipe("knowfree", config={"model": SMALL_MODEL, **config})
    return nlp


def train(nlp, examples, max_steps=300, target_f=1.0):
    """Train in place until the training F1 reaches ``target_f``; RETURNS the last F1.

    Runs with one torch thread: with more, the order of floating-point sums
    varies between runs and so does the trained model, which made tests that
    look at what the model learned flaky.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fix_random_seed(0)
        optimizer = nlp.initialize(lambda: examples)
        optimizer.learn_rate = 0.003
        score = 0.0
        for step in range(max_steps):
            nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
            if step % 10 == 9:
                score = nlp.evaluate(examples)[f"spans_{nlp.get_pipe('knowfree').key}_f"]
                if score >= target_f:
                    break
        return score
    finally:
        torch.set_num_threads(threads)
