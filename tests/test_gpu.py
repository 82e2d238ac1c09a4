"""The component on a CUDA GPU (thinc CupyOps + torch on cuda).

Skipped where thinc finds no GPU (CI, a laptop): these run on a machine with
CUDA, cupy and a CUDA build of torch.
"""

import numpy
import pytest
import spacy
from thinc.api import get_current_ops, require_cpu, require_gpu, set_current_ops
from thinc.util import has_cupy_gpu, has_torch_cuda_gpu

from _examples import EXTENSION, FLAT, NESTED, make_examples, make_nlp, span_tuples, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (has_cupy_gpu and has_torch_cuda_gpu),
        reason="needs a CUDA GPU with cupy and a CUDA build of torch",
    ),
]


@pytest.fixture
def on_gpu():
    """thinc's current ops are CupyOps (and torch's default device cuda) inside the test."""
    previous = get_current_ops()
    require_gpu(0)
    try:
        yield
    finally:
        require_cpu()
        set_current_ops(previous)


def test_overfits_on_gpu_and_predicts_the_same_after_loading_on_cpu(on_gpu):
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    assert train(nlp, examples, max_steps=300) == 1.0
    component = nlp.get_pipe("knowfree")
    assert type(component.model.ops).__name__ == "CupyOps"
    texts = [text for text, _ in FLAT]
    gpu_docs = list(nlp.pipe(texts))
    assert [span_tuples(doc) for doc in gpu_docs] == [anns for _, anns in FLAT]
    data = nlp.to_bytes()
    config = nlp.config

    require_cpu()
    cpu_nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    cpu_nlp.from_bytes(data)
    assert type(cpu_nlp.get_pipe("knowfree").model.ops).__name__ == "NumpyOps"
    cpu_docs = list(cpu_nlp.pipe(texts))
    for gpu_doc, cpu_doc in zip(gpu_docs, cpu_docs):
        assert span_tuples(gpu_doc) == span_tuples(cpu_doc)
        numpy.testing.assert_allclose(
            gpu_doc.spans["sc"].attrs["scores"], cpu_doc.spans["sc"].attrs["scores"], atol=1e-4
        )


def test_nested_spans_and_long_docs_on_gpu(on_gpu):
    nlp = make_nlp(nested=True)
    examples = make_examples(nlp, NESTED)
    assert train(nlp, examples, max_steps=300) == 1.0
    long_text = "".join(text for text, _ in NESTED) * 40  # 1,400 tokens: many row batches of the grid
    doc = nlp(long_text)
    scores = doc.spans["sc"].attrs["scores"].tolist()
    assert len(scores) == len(doc.spans["sc"]) > 0
    assert all(isinstance(score, float) and 0.0 < score <= 1.0 for score in scores)
    assert {(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]} >= {(0, 4, "ORG"), (0, 2, "LOC")}


def test_synthetic_docs_and_extension_labels_train_on_gpu(on_gpu):
    nlp = make_nlp(beta=0.5)
    examples = make_examples(nlp, FLAT, extension=EXTENSION, synthetic=[FLAT[0][0]])
    assert train(nlp, examples, max_steps=300) == 1.0
