"""``knowfree_lexicon``: an offline Chinese knowledge source (no LLM).

Runs jieba's POS-tagging segmenter (``jieba.posseg``) over ``doc.text`` and
appends extension spans to ``doc.spans["knowfree_ext"]`` in three families:

* ``SEG:WORD`` for every word,
* ``POS:<UPOS>`` for every word, jieba/ICTCLAS tags mapped onto Universal POS
  tags (:data:`spacy_knowfree.pos_tags.JIEBA_TO_UPOS`),
* ``ENT:<type>`` for words with an entity-like tag (``nr`` person, ``ns``
  place, ``nt`` organisation, ``nz`` other proper noun, ``t`` time).

Whitespace is never labelled. Character offsets are placed with
``doc.char_span(..., alignment_mode="expand")``, so the component works on
character-tokenized docs as well as on docs tokenized some other way.
"""

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span

from ..constants import EXTENSION_SPANS_KEY, SEG_WORD_LABEL
from ..errors import Errors
from ..pos_tags import JIEBA_TO_UPOS, UPOS_TAGS, jieba_tag_to_upos

FAMILIES = ("SEG", "POS", "ENT")
SEG_LABEL = SEG_WORD_LABEL

#: Default ``ENT:`` type names for jieba's entity-like tags. Chinese, because
#: the LLM entity prompt (paper, Fig. 9) is Chinese and its types (人名, 地名,
#: 组织机构, ...) then coincide with these without any merging.
DEFAULT_ENTITY_TYPES: Dict[str, str] = {
    "nr": "人名",  # person name
    "nrfg": "人名",
    "nrt": "人名",  # transliterated person name
    "ns": "地名",  # place name
    "nt": "组织机构",  # organisation
    "nz": "其他专名",  # other proper noun
    "t": "时间",  # time expression
}

#: The same entity families with English type names; pass as
#: ``entity_types`` to use them.
ENTITY_TYPES_EN: Dict[str, str] = {
    "nr": "PERSON",
    "nrfg": "PERSON",
    "nrt": "PERSON",
    "ns": "PLACE",
    "nt": "ORGANIZATION",
    "nz": "OTHER_PROPER_NOUN",
    "t": "TIME",
}

# Full-width ASCII variants (U+FF01..U+FF5E) and the ideographic space map one
# character to one character, so offsets are unchanged.
_HALFWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_HALFWIDTH[0x3000] = 0x20

_JIEBA_LOCK = threading.Lock()
# (user dictionary files, halfwidth) -> (POSTokenizer, untagged user words).
# Segmenters are read-only once built, so components with the same user
# dictionaries share one (jieba's dictionary costs ~1.5 s and ~100 MB).
_POSSEG_CACHE: Dict[Tuple, Tuple[object, frozenset]] = {}


@contextlib.contextmanager
def _quiet_jieba() -> Iterator[None]:
    """Hide jieba's INFO lines ("Building prefix dict ...") while it loads."""
    logger = logging.getLogger("jieba")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def new_jieba_tokenizer(user: str = "knowfree_lexicon") -> Any:
    """A jieba tokenizer of its own (not ``jieba``'s global one) with the default
    dictionary loaded; KF254 names ``user`` when jieba is not installed."""
    try:
        import jieba
    except ImportError:
        raise ImportError(Errors.KF254.format(name=user)) from None
    with _quiet_jieba():
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
    return tokenizer


class LexiconWord(NamedTuple):
    """One word found by :meth:`KnowFreeLexicon.analyze`."""

    start: int  # character offset into the text
    end: int
    tag: str  # jieba tag
    upos: str  # Universal POS tag
    entity: Optional[str]  # ENT: type name, or None


@Language.factory(
    "knowfree_lexicon",
    assigns=["doc.spans"],
    default_config={
        "spans_key": EXTENSION_SPANS_KEY,
        "families": list(FAMILIES),
        "user_dict": None,
        "entity_types": None,
        "pos_overrides": {},
        "hmm": True,
        "halfwidth": True,
    },
)
def make_knowfree_lexicon(
    nlp: Language,
    name: str,
    spans_key: str,
    families: List[str],
    user_dict: Optional[Union[str, List[str]]],
    entity_types: Optional[Dict[str, str]],
    pos_overrides: Dict[str, str],
    hmm: bool,
    halfwidth: bool,
) -> "KnowFreeLexicon":
    """Create a ``knowfree_lexicon`` component.

    spans_key (str): The ``doc.spans`` key to append to.
    families (List[str]): Which of ``SEG``, ``POS``, ``ENT`` to emit.
    user_dict (Optional[Union[str, List[str]]]): Path(s) of jieba user
        dictionaries (one word a line: ``word [freq] [tag]``), e.g. the MSR or
        PKU training word lists. Read when the segmenter is first needed.
    entity_types (Optional[Dict[str, str]]): jieba tag -> ``ENT:`` type name;
        None for ``DEFAULT_ENTITY_TYPES``. A given table replaces the default
        one entirely (it is not merged with it).
    pos_overrides (Dict[str, str]): jieba tag -> UPOS entries replacing those
        of ``JIEBA_TO_UPOS``.
    hmm (bool): Let jieba find unknown words with its HMM.
    halfwidth (bool): Show jieba full-width ASCII (ＡＢＣ１２３) as half-width
        so that it is segmented as latin words and numbers.
    """
    return KnowFreeLexicon(
        nlp.vocab,
        name=name,
        spans_key=spans_key,
        families=families,
        user_dict=user_dict,
        entity_types=entity_types,
        pos_overrides=pos_overrides,
        hmm=hmm,
        halfwidth=halfwidth,
    )


class KnowFreeLexicon(Pipe):
    """Offline SEG/POS/ENT extension spans from jieba.posseg.

    The jieba segmenter is private to the package (user dictionaries do not
    leak into ``jieba``'s global tokenizer; components with the same user
    dictionaries share one), built on first use, quietly, and rebuilt in
    worker processes (``nlp.pipe(..., n_process=2)``). Nothing but
    the config is serialized: ``user_dict`` paths must exist where the
    pipeline is loaded.
    """

    def __init__(
        self,
        vocab,
        name: str = "knowfree_lexicon",
        *,
        spans_key: str = EXTENSION_SPANS_KEY,
        families: Iterable[str] = FAMILIES,
        user_dict: Optional[Union[str, Path, Sequence[Union[str, Path]]]] = None,
        entity_types: Optional[Dict[str, str]] = None,
        pos_overrides: Optional[Dict[str, str]] = None,
        hmm: bool = True,
        halfwidth: bool = True,
    ) -> None:
        self.vocab = vocab
        self.name = name
        self.spans_key = spans_key
        fams = [str(f).upper() for f in families]
        bad = [f for f in fams if f not in FAMILIES]
        if bad or not fams:
            raise ValueError(Errors.KF250.format(name=name, value=list(families), allowed=list(FAMILIES)))
        self.families = tuple(dict.fromkeys(fams))
        if user_dict is None:
            paths: List[str] = []
        elif isinstance(user_dict, (str, Path)):
            paths = [str(user_dict)]
        else:
            paths = [str(p) for p in user_dict]
        self.user_dicts = paths
        self.entity_types = dict(DEFAULT_ENTITY_TYPES if entity_types is None else entity_types)
        for tag, typ in self.entity_types.items():
            if not isinstance(typ, str) or not typ.strip():
                raise ValueError(Errors.KF252.format(name=name, tag=tag, value=typ))
        self.pos_table = dict(JIEBA_TO_UPOS)
        for tag, upos in (pos_overrides or {}).items():
            if upos not in UPOS_TAGS:
                raise ValueError(Errors.KF253.format(name=name, tag=tag, value=upos, allowed=list(UPOS_TAGS)))
            self.pos_table[tag] = upos
        self.hmm = bool(hmm)
        self.halfwidth = bool(halfwidth)
        self._posseg: Any = None  # jieba.posseg.POSTokenizer, built on first use
        self._untagged_user_words: frozenset = frozenset()

    # -- jieba, lazily -----------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_posseg"] = None  # jieba tokenizers hold locks; rebuild lazily
        state["_untagged_user_words"] = frozenset()
        return state

    def __reduce__(self):
        # Pipe is a Cython class whose default reduce ignores __getstate__.
        return (_unpickle_lexicon, (self.__class__, self.__getstate__()))

    @property
    def is_initialized(self) -> bool:
        """Whether the jieba segmenter has been built in this process."""
        return self._posseg is not None

    def _get_posseg(self):
        if self._posseg is None:
            with _JIEBA_LOCK:
                if self._posseg is None:
                    key = self._cache_key()
                    if key not in _POSSEG_CACHE:
                        _POSSEG_CACHE[key] = self._build_posseg()
                    self._posseg, self._untagged_user_words = _POSSEG_CACHE[key]
        return self._posseg

    def _cache_key(self) -> Tuple:
        files = []
        for path in self.user_dicts:
            p = Path(path)
            if not p.is_file():
                raise IOError(Errors.KF251.format(name=self.name, path=path))
            st = p.stat()
            files.append((str(p.resolve()), st.st_mtime_ns, st.st_size))
        return (tuple(files), self.halfwidth)

    def _build_posseg(self):
        tokenizer = new_jieba_tokenizer(self.name)  # KF254 when jieba is missing
        import jieba.posseg

        with _quiet_jieba():
            untagged: Set[str] = set()
            for path in self.user_dicts:
                for word, freq, tag in _read_user_dict(path, self.halfwidth):
                    tokenizer.add_word(word, freq, tag)
                    if tag is None:
                        untagged.add(word)
            posseg = jieba.posseg.POSTokenizer(tokenizer)
            posseg.makesure_userdict_loaded()
        # Words the user dictionary added without a tag and jieba does not know
        # are tagged "x" by jieba; we re-tag them from their longest known suffix.
        untagged = {w for w in untagged if w not in posseg.word_tag_tab}
        return posseg, frozenset(untagged)

    def initialize(self, get_examples=None, *, nlp=None) -> None:
        """Build the jieba segmenter now (otherwise it is built on first use)."""
        self._get_posseg()

    # -- annotation --------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        """All labels this component can write, given its families."""
        out: List[str] = []
        if "SEG" in self.families:
            out.append(SEG_LABEL)
        if "POS" in self.families:
            out.extend(f"POS:{u}" for u in UPOS_TAGS)
        if "ENT" in self.families:
            out.extend(f"ENT:{t}" for t in dict.fromkeys(self.entity_types.values()))
        return tuple(out)

    def analyze(self, text: str) -> List["LexiconWord"]:
        """Segment and tag ``text``.

        text (str): The text.
        RETURNS (List[LexiconWord]): ``(start, end, tag, upos, entity)`` per
            non-whitespace word, in order: character offsets into ``text``,
            the jieba tag, the UPOS tag and the ``ENT:`` type (or None).
        """
        posseg = self._get_posseg()
        shown = text.translate(_HALFWIDTH) if self.halfwidth else text
        out: List[LexiconWord] = []
        pos = 0
        for pair in posseg.cut(shown, HMM=self.hmm):
            word, tag = pair.word, pair.flag
            if not word:
                continue
            if shown.startswith(word, pos):
                start = pos
            else:  # never seen, but do not trust concatenation blindly
                start = shown.find(word, pos)
                if start < 0:
                    continue
            end = start + len(word)
            pos = end
            raw = text[start:end]
            stripped = raw.strip()
            if not stripped:
                continue
            start += len(raw) - len(raw.lstrip())
            end -= len(raw) - len(raw.rstrip())
            entity_ok = True
            if tag == "x" and word in self._untagged_user_words:
                tag, suffix_len = self._suffix_tag(word)
                entity_ok = suffix_len >= 2  # one-character suffixes are too weak
            upos = jieba_tag_to_upos(stripped, tag, self.pos_table)
            ent = self.entity_types.get(tag) if entity_ok else None
            out.append(LexiconWord(start, end, tag, upos, ent))
        return out

    def _suffix_tag(self, word: str) -> Tuple[str, int]:
        table = self._posseg.word_tag_tab
        for i in range(1, len(word)):
            tag = table.get(word[i:])
            if tag and self.pos_table.get(tag, "X") != "X":  # skip x, zg, eng
                return tag, len(word) - i
        return "x", 0

    def __call__(self, doc: Doc) -> Doc:
        """Append SEG/POS/ENT spans to ``doc.spans[spans_key]``.

        doc (Doc): The document.
        RETURNS (Doc): The same document.
        """
        if self.spans_key in doc.spans:
            group = doc.spans[self.spans_key]
        else:
            doc.spans[self.spans_key] = []
            group = doc.spans[self.spans_key]
        if not doc.text.strip():
            return doc
        seen = {(s.start, s.end, s.label_) for s in group}
        new: List[Span] = []
        for start, end, _tag, upos, ent in self.analyze(doc.text):
            span = doc.char_span(start, end, alignment_mode="expand")
            if span is None or len(span) == 0:
                continue
            labels = []
            if "SEG" in self.families:
                labels.append(SEG_LABEL)
            if "POS" in self.families:
                labels.append(f"POS:{upos}")
            if "ENT" in self.families and ent is not None:
                labels.append(f"ENT:{ent}")
            for label in labels:
                key = (span.start, span.end, label)
                if key in seen:
                    continue
                seen.add(key)
                new.append(Span(doc, span.start, span.end, label=label))
        if new:
            group.extend(new)
        return doc


def _unpickle_lexicon(cls, state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _read_user_dict(path: str, halfwidth: bool) -> Iterable[Tuple[str, Optional[int], Optional[str]]]:
    """Lines ``word [freq] [tag]`` of a jieba user dictionary (UTF-8, BOM and
    CRLF tolerated). Words are shown half-width like the text when asked."""
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            parts = line.strip().split()
            if not parts:
                continue
            word, freq, tag = parts[0], None, None
            rest = parts[1:]
            if rest and rest[0].isdigit():
                freq = int(rest[0])
                rest = rest[1:]
            if rest and rest[0].isascii() and rest[0].isalpha():
                tag = rest[0]
            if halfwidth:
                word = word.translate(_HALFWIDTH)
            yield word, freq, tag


__all__ = [
    "KnowFreeLexicon",
    "LexiconWord",
    "make_knowfree_lexicon",
    "DEFAULT_ENTITY_TYPES",
    "ENTITY_TYPES_EN",
    "FAMILIES",
    "SEG_LABEL",
]
