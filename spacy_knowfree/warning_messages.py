"""Warning messages, spaCy style: ``Warnings.KW001`` reads ``[KW001] ...``;
their code ranges follow the errors' (:mod:`.errors`)."""

from spacy.errors import ErrorsWithCodes


class Warnings(metaclass=ErrorsWithCodes):
    KW001 = (
        "{count} gold span(s) under doc.spans['{key}'] are longer than "
        "max_span_width={width} tokens (longest: {longest}) and cannot be "
        "represented by the span grid, so they are left out of training. "
        "Raise 'max_span_width' in [components.{name}] if they matter."
    )
    KW002 = (
        "{count} document(s) have no doc.spans['{key}'] group: their extension "
        "columns are left out of the loss (not treated as 'no extension span')."
    )
    KW003 = (
        "{count} gold span(s) under doc.spans['{key}'] overlap a longer one, so "
        "the linear-chain CRF of component '{name}' was trained without them "
        "(it tags flat spans only; the outermost ones are kept)."
    )

    # KW25x: offline lexicon and synonymous label merging
    KW250 = (
        "{count} POS span(s) carry {n} tag spelling(s) that could not be mapped "
        "onto a Universal POS tag and were left unchanged: {tags}. Map them by "
        "hand, or drop those spans, before training."
    )

    # KW1xx: data converters and sampling
    KW101 = (
        "{count} chunk(s) in {path} start with an I-/M-/E- tag instead of B-/S- "
        "(first at line {line}). They were read conlleval-style: each one starts "
        "a new entity of its type."
    )
    KW102 = (
        "{count} chunk(s) in {path} end without an E-/S- tag (first starting at "
        "line {line}). They were read conlleval-style: closed where the next "
        "chunk, an O or the end of the sentence begins."
    )
    KW103 = (
        "These labels have fewer than k={k} instances in the pool (label: "
        "count): {counts}. The sample holds all of them."
    )

    # KW20x: LLM tasks and backends (spacy_knowfree.llm)
    KW200 = (
        "{backend}: api_key_env names the environment variable '{env}', which "
        "is not set or empty, so requests to {endpoint} carry no Authorization "
        "header. Export {env}, or drop api_key_env for servers without keys."
    )
    KW201 = (
        "{backend}: {count} of {total} replies stopped at the token limit "
        "({limit} new tokens) and may be cut off; the parsers keep their "
        "finished items. Raise {arg} if this happens often."
    )
    KW202 = (
        "Response cache {path}: skipped {count} unreadable line(s) (a run was "
        "probably killed while writing). Their prompts will be asked again."
    )
    KW203 = (
        "{backend}: {count} prompt(s) plus {new} new tokens exceed the model's "
        "context of {context} tokens (longest prompt: {longest} tokens). They "
        "are sent whole, never truncated; give the model a context_length so "
        "that spacy-llm shards long documents."
    )
    KW204 = (
        "{backend}: {count} prompt(s) got no usable reply and were recorded "
        "as dropped ({reasons}); the run goes on without them. Rerun with "
        "--retry-failed (knowfree extend) or KNOWFREE_RETRY_FAILED=1 (any "
        "command) to ask them again."
    )

    # KW40x: analysis (spacy_knowfree.analysis)
    KW400 = (
        "No font with Chinese characters is installed for matplotlib, so these "
        "labels are drawn under other names: {replaced}. Install one (e.g. "
        "the fonts-noto-cjk package) to see the original labels; the JSON "
        "written next to the plot keeps them."
    )

    # KW30x: synthesis and peer augmenters (spacy_knowfree.synthesis)
    KW300 = (
        "The annotator writes target spans to doc.spans['{key}'], but {count} "
        "of {total} source docs have no such group. Pass --spans-key with the "
        "key of the fusion samples' target spans, or check that the annotator "
        "was trained on them."
    )

    # KW31x: the span model's width, speed and int8 inference
    KW310 = (
        "The training score weights give no weight to spans_{key}_f, the "
        "score of component '{name}' (spans_key = \"{key}\"), so training "
        "would pick checkpoints on other scores (weights: {weights}). Set "
        "them in the config: [training.score_weights] spans_{key}_f = 1.0, "
        "spans_{key}_p = 0.0, spans_{key}_r = 0.0 and spans_sc_f = null, "
        "spans_sc_p = null, spans_sc_r = null."
    )
