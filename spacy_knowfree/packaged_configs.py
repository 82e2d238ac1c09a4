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
#: (extra, module) of the knowfree_crf component (``knowfree init config --crf-tags``)
CRF_EXTRA: Tuple[str, str] = ("crf", "pycrfsuite")

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


def with_crf_tags(text: str, config_name: str) -> str:
    """A training config text with the CRF peer as an input (comments kept):
    a ``knowfree_crf`` component first in the pipeline, listed in ``[training]
    annotating_components``, and ``crf_tags = true`` in its
    ``CharNgramEmbed.v1`` block (see :mod:`spacy_knowfree.peer.crf_peer`).

    text (str): a CNN training config (knowfree, spancat or ner).
    config_name (str): its name, for the error message.
    RETURNS (str): the new text; raises ``ValueError`` (KF615) for a config
        without exactly one ``CharNgramEmbed.v1`` block.
    """
    config = Config().from_str(text, interpolate=False)
    embeds = [key for key, section in _sections(config, "") if section.get("@architectures") == CHAR_NGRAM_EMBED]
    if len(embeds) != 1:
        raise ValueError(Errors.KF615.format(config=config_name, found=len(embeds)))
    text = apply_overrides(
        text,
        {
            "nlp.pipeline": ["knowfree_crf", *config["nlp"]["pipeline"]],
            "training.annotating_components": ["knowfree_crf", *config["training"]["annotating_components"]],
        },
        config_name,
    )
    lines = text.split("\n")
    header = lines.index(f"[{embeds[0]}]")
    end = next((i for i in range(header + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
    while lines[end - 1].strip() == "":
        end -= 1
    lines[end:end] = ["# the knowfree_crf component's BIOES tag of each token", "crf_tags = true"]
    first = next(i for i, line in enumerate(lines) if line.startswith("[components."))
    lines[first:first] = [
        "[components.knowfree_crf]",
        "# a character n-gram CRF trained at initialize; its tags feed the embedding",
        'factory = "knowfree_crf"',
        "",
    ]
    out = "\n".join(lines)
    Config().from_str(out, interpolate=False)  # still a valid config
    return out


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
