"""The configs shipped inside the package (``spacy_knowfree/configs/*.cfg``).

Each config exists once, here. The repository's top-level ``configs/`` is a
symbolic link to this folder (so ``project.yml``, the benchmarks and the
README use the same files), and ``knowfree init config`` / ``knowfree init
extend-config`` write them for a pip user, with any ``--section.key value``
settings applied in place (comments and layout are kept).
"""

import re
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import srsly
from thinc.api import Config

from .constants import TARGET_SPANS_KEY
from .errors import Errors

SYSTEMS: Tuple[str, ...] = ("knowfree", "spancat", "ner")
ENCODERS: Tuple[str, ...] = ("cnn", "trf")
LANGS: Tuple[str, ...] = ("zh",)
SOURCES: Tuple[str, ...] = ("lexicon", "smollm2", "openai", "lexicon+llm")

#: (system, encoder, lang) -> packaged training config
TRAINING_CONFIGS: Dict[Tuple[str, str, str], str] = {
    ("knowfree", "cnn", "zh"): "knowfree_zh_cpu.cfg",
    ("knowfree", "trf", "zh"): "knowfree_trf.cfg",
    ("spancat", "cnn", "zh"): "spancat_zh_cpu.cfg",
    ("ner", "cnn", "zh"): "ner_zh_cpu.cfg",
}
#: knowledge source -> packaged knowledge-pipeline config (knowfree extend -c)
EXTEND_CONFIGS: Dict[str, str] = {
    "lexicon": "extend_lexicon.cfg",
    "smollm2": "extend_smollm2.cfg",
    "openai": "extend_openai.cfg",
    "lexicon+llm": "extend_lexicon_llm.cfg",
}
#: packaged config -> (extra of spacy-knowfree it needs, a module that extra installs)
EXTRA_OF_CONFIG: Dict[str, Tuple[str, str]] = {
    "knowfree_trf.cfg": ("transformers", "spacy_transformers"),
    "extend_smollm2.cfg": ("llm", "spacy_llm"),
    "extend_openai.cfg": ("llm", "spacy_llm"),
    "extend_lexicon_llm.cfg": ("llm", "spacy_llm"),
}

CHAR_NGRAM_EMBED = "spacy-knowfree.CharNgramEmbed.v1"
#: the factory (and the component name in the packaged configs) of the CRF peer
CRF_PEER_FACTORY = "knowfree_crf"
_CRF_TAGS_COMMENT = "# the BIOES tag that the knowfree_crf component's CRF gives each token"

_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_SETTING = re.compile(r"^([^\s=#\[][^=]*?)\s*=")


def config_dir() -> Path:
    """The folder of the packaged configs (inside the installed package).

    RETURNS (Path): ``.../spacy_knowfree/configs``.
    """
    return Path(str(resources.files(__package__) / "configs"))


def packaged_config_names() -> List[str]:
    """The file names of every packaged config.

    RETURNS (List[str]): training configs first, then knowledge configs.
    """
    return list(TRAINING_CONFIGS.values()) + list(EXTEND_CONFIGS.values())


def training_config_name(system: str, encoder: str = "cnn", lang: str = "zh") -> str:
    """The packaged training config of a system, encoder and language.

    system (str): ``knowfree``, ``spancat`` or ``ner``.
    encoder (str): ``cnn`` (CNN tok2vec, CPU) or ``trf`` (spacy-transformers).
    lang (str): the language (``zh``).
    RETURNS (str): the config's file name; raises ``ValueError`` (KF610).
    """
    name = TRAINING_CONFIGS.get((system, encoder, lang))
    if name is None:
        options = "; ".join(f"--system {s} --encoder {e} --lang {lang_}" for s, e, lang_ in TRAINING_CONFIGS)
        choice = f"--system {system} --encoder {encoder} --lang {lang}"
        raise ValueError(Errors.KF610.format(choice=choice, what="training", options=options))
    return name


def extend_config_name(source: str) -> str:
    """The packaged knowledge-pipeline config of a knowledge source.

    source (str): ``lexicon``, ``smollm2``, ``openai`` or ``lexicon+llm``.
    RETURNS (str): the config's file name; raises ``ValueError`` (KF610).
    """
    name = EXTEND_CONFIGS.get(source)
    if name is None:
        options = ", ".join(f"--source {s}" for s in EXTEND_CONFIGS)
        raise ValueError(Errors.KF610.format(choice=f"--source {source}", what="knowledge", options=options))
    return name


def read_packaged_config(name: str) -> str:
    """The text of a packaged config, exactly as shipped.

    name (str): file name, e.g. ``knowfree_zh_cpu.cfg``.
    RETURNS (str): the config text; raises ``ValueError`` (KF613) when absent.
    """
    path = resources.files(__package__) / "configs" / name
    try:
        return path.read_text(encoding="utf8")
    except OSError:
        raise ValueError(Errors.KF613.format(name=name, path=config_dir())) from None


def apply_overrides(text: str, overrides: Optional[Mapping[str, Any]], config_name: str) -> str:
    """Set existing settings of a config text, keeping its comments and layout.

    text (str): the config text.
    overrides (Optional[Mapping[str, Any]]): dotted names -> values, as
        the ``--section.key value`` options of ``knowfree init`` give them
        (``{"vars.encoder": "/models/bert", "training.max_steps": 100}``).
    config_name (str): the config's name, for the error message.
    RETURNS (str): the new text; raises ``ValueError`` (KF612) for a name
        that is not a setting of the config.
    """
    if not overrides:
        return text
    lines = text.split("\n")
    for key, value in overrides.items():
        section, _, setting = key.rpartition(".")
        index = _find_setting(lines, section, setting) if section else None
        if index is None:
            known = ", ".join(_settings_of(lines, ("vars", "paths"))) or "none"
            raise ValueError(Errors.KF612.format(key=key, config=config_name, known=known))
        end = index + 1
        while end < len(lines) and lines[end][:1] in (" ", "\t") and lines[end].strip():
            end += 1  # continuation lines of a multi-line value
        lines[index:end] = [f"{setting} = {srsly.json_dumps(value)}"]
    out = "\n".join(lines)
    Config().from_str(out, interpolate=False)  # still a valid config
    return out


def crf_peer_names(text: str) -> List[str]:
    """The ``knowfree_crf`` components of a config text's pipeline.

    text (str): a training config.
    RETURNS (List[str]): their names, in pipeline order (empty without the CRF peer).
    """
    config = Config().from_str(text, interpolate=False)
    components = config.get("components", {})
    return [name for name in config["nlp"]["pipeline"] if components.get(name, {}).get("factory") == CRF_PEER_FACTORY]


def with_crf_tags(text: str, config_name: str) -> str:
    """A training config text with the CRF peer as an input (comments kept):
    a ``knowfree_crf`` component first in the pipeline, listed in ``[training]
    annotating_components``, learning the gold of the pipeline's last
    component (its ``spans_key``, or ``doc.ents`` for ``ner``), and
    ``crf_tags = true`` in its ``CharNgramEmbed.v1`` block (see
    :mod:`spacy_knowfree.peer.crf_peer`). The packaged CNN configs have it
    since 0.8.0; :func:`without_crf_tags` is the inverse.

    text (str): a CNN training config (knowfree, spancat or ner) without the CRF peer.
    config_name (str): its name, for the error message.
    RETURNS (str): the new text; raises ``ValueError`` (KF615) for a config
        without exactly one ``CharNgramEmbed.v1`` block, or (KF616) for one
        that already has the CRF peer.
    """
    config = Config().from_str(text, interpolate=False)
    embeds = _char_ngram_embeds(config)
    if len(embeds) != 1:
        raise ValueError(Errors.KF615.format(config=config_name, found=len(embeds)))
    if crf_peer_names(text):
        raise ValueError(Errors.KF616.format(config=config_name))
    target = config["nlp"]["pipeline"][-1]
    last = config["components"][target]
    # ner's gold is doc.ents; otherwise the last component's key, kept in step by interpolation
    spans_key = None if last.get("factory") == "ner" else last.get("spans_key", TARGET_SPANS_KEY)
    key_setting = "null" if spans_key is None else srsly.json_dumps(spans_key)
    if "spans_key" in last:
        key_setting = f"${{components.{target}.spans_key}}"
    text = apply_overrides(
        text,
        {
            "nlp.pipeline": [CRF_PEER_FACTORY, *config["nlp"]["pipeline"]],
            "training.annotating_components": [CRF_PEER_FACTORY, *config["training"]["annotating_components"]],
        },
        config_name,
    )
    lines = text.split("\n")
    header = lines.index(f"[{embeds[0]}]")
    end = _section_end(lines, header)
    while lines[end - 1].strip() == "":
        end -= 1
    lines[end:end] = [_CRF_TAGS_COMMENT, "crf_tags = true"]
    first = next(i for i, line in enumerate(lines) if line.startswith("[components."))
    if spans_key is None:
        gold = f"doc.ents, the {target} component's gold"
    elif "spans_key" in last:
        gold = f"the {target} component's gold spans"
    else:
        gold = f"the gold spans of doc.spans[{spans_key!r}]"
    lines[first:first] = [
        f"[components.{CRF_PEER_FACTORY}]",
        f"# a character n-gram CRF trained at initialize on {gold};",
        "# its tag of each token feeds the embedding (crf_tags = true below)",
        f'factory = "{CRF_PEER_FACTORY}"',
        f"spans_key = {key_setting}",
        "",
    ]
    out = "\n".join(lines)
    Config().from_str(out, interpolate=False)  # still a valid config
    return out


def without_crf_tags(text: str, config_name: str) -> str:
    """A training config text without the CRF peer (comments kept): the
    inverse of :func:`with_crf_tags`, for ``knowfree init config
    --no-crf-tags`` and for the benchmark's systems measured without it.

    text (str): a training config, with or without ``knowfree_crf`` components.
    config_name (str): its name, for the error message.
    RETURNS (str): the text without those components, their entries in
        ``[nlp] pipeline`` and ``[training] annotating_components``, and the
        ``crf_tags`` / ``crf_tag_rows`` settings of its embedding (with the
        comment lines just above them); ``text`` itself without the CRF peer.
    """
    names = crf_peer_names(text)
    if not names:
        return text
    config = Config().from_str(text, interpolate=False)
    text = apply_overrides(
        text,
        {
            "nlp.pipeline": [n for n in config["nlp"]["pipeline"] if n not in names],
            "training.annotating_components": [
                n for n in config["training"]["annotating_components"] if n not in names
            ],
        },
        config_name,
    )
    lines = text.split("\n")
    for name in names:
        header = lines.index(f"[components.{name}]")
        del lines[header : _section_end(lines, header)]
    embeds = _char_ngram_embeds(config)
    for embed in embeds:
        header = lines.index(f"[{embed}]")
        for setting in ("crf_tags", "crf_tag_rows"):
            index = _find_setting(lines, embed, setting)
            if index is None:
                continue
            first = index
            while first > header + 1 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            del lines[first : index + 1]
    out = "\n".join(lines)
    Config().from_str(out, interpolate=False)  # still a valid config
    return out


def _section_end(lines: List[str], header: int) -> int:
    """The index of the first line after the section that starts at ``header``."""
    return next((i for i in range(header + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))


def _char_ngram_embeds(config: Mapping[str, Any]) -> List[str]:
    """The dotted names of a config's ``CharNgramEmbed.v1`` sections."""
    return [key for key, section in _sections(config, "") if section.get("@architectures") == CHAR_NGRAM_EMBED]


def _sections(node: Mapping[str, Any], prefix: str) -> List[Tuple[str, Mapping[str, Any]]]:
    """Every nested section of a config with its dotted name, depth first."""
    out: List[Tuple[str, Mapping[str, Any]]] = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{key}" if prefix else key
            out.append((name, value))
            out.extend(_sections(value, name))
    return out


def write_config(text: str, output: Path, force: bool = False) -> None:
    """Write a config text to a file, never over an existing one unless ``force``.

    text (str): the config text.
    output (Path): the file to write (its folder is created).
    force (bool): overwrite an existing file.
    Raises ``ValueError`` (KF611) when ``output`` exists and not ``force``.
    """
    if output.exists() and not force:
        raise ValueError(Errors.KF611.format(path=output))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf8")


def _find_setting(lines: List[str], section: str, setting: str) -> Optional[int]:
    """The index of the line ``setting = ...`` of ``[section]``, or None."""
    current = None
    for i, line in enumerate(lines):
        header = _SECTION.match(line)
        if header:
            current = header.group(1).strip()
            continue
        match = _SETTING.match(line)
        if match and current == section and match.group(1).strip() == setting:
            return i
    return None


def _settings_of(lines: List[str], sections: Tuple[str, ...]) -> List[str]:
    """The dotted names of the settings in ``sections``."""
    out: List[str] = []
    current = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            current = header.group(1).strip()
            continue
        match = _SETTING.match(line)
        if match and current in sections:
            out.append(f"{current}.{match.group(1).strip()}")
    return out
