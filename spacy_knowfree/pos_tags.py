"""Part-of-speech tag tables: jieba/ICTCLAS, CTB and PTB tags and the many
ways LLMs spell POS tags, mapped onto the 17 Universal POS tags.

Used by the offline lexicon (``knowfree_lexicon``) to label ``POS:<UPOS>``
spans and by :mod:`spacy_knowfree.knowledge.label_merging` to merge LLM POS spellings.
"""

import re
import unicodedata
from typing import Dict, Optional

from .constants import CJK_RANGES

#: The 17 Universal POS tags (UD v2).
UPOS_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)

#: jieba.posseg (ICTCLAS / PKU-style) tag -> Universal POS tag. Covers every tag
#: in jieba's dictionary and HMM model plus the tags its regexes assign
#: (``eng``, ``m``, ``x``). Where a jieba class is split across several UPOS
#: tags, the choice follows the majority observed on UD Chinese GSDSimp
#: (dev+test) for jieba words that coincide with a UD token: e.g. ``f`` (方位词)
#: is mostly ADP (localizers 上/中/后), ``vn`` (名动词) mostly NOUN, ``q`` (量词)
#: NOUN (UD Chinese tags classifiers NOUN), ``ul/uz/ug`` (了/着/过) AUX.
#: Two tags are refined per word by :func:`jieba_tag_to_upos`: ``x`` (by the
#: Unicode category of the characters) and ``m`` (NOUN when no numeral in it).
JIEBA_TO_UPOS: Dict[str, str] = {
    # adjectives
    "a": "ADJ",  # 形容词
    "ad": "ADV",  # 副形词 (adjective used adverbially)
    "an": "ADJ",  # 名形词
    "ag": "ADJ",  # 形容词性语素
    "b": "ADJ",  # 区别词 (non-predicate adjective)
    "bg": "ADJ",  # 区别语素
    "z": "ADJ",  # 状态词
    # conjunctions
    "c": "CCONJ",  # 连词 (coordinating and subordinating not distinguished)
    # adverbs
    "d": "ADV",  # 副词
    "df": "ADV",  # 副词 (不要)
    "dg": "ADV",  # 副语素
    "vd": "ADV",  # 副动词
    # interjections, onomatopoeia
    "e": "INTJ",  # 叹词
    "o": "INTJ",  # 拟声词
    # foreign words
    "eng": "X",  # English/latin token (regex)
    "en": "X",  # (HMM) foreign
    # localizers
    "f": "ADP",  # 方位词
    # morphemes, affixes
    "g": "NOUN",  # 语素 (mostly nominal bound morphemes)
    "h": "PART",  # 前接成分 (prefix)
    "k": "PART",  # 后接成分 (suffix, e.g. 们/者)
    "zg": "X",  # single characters of mixed class in jieba's dictionary
    # idioms, set phrases, abbreviations
    "i": "VERB",  # 成语
    "in": "NOUN",  # 成语 used as noun (HMM)
    "l": "VERB",  # 习用语
    "ln": "NOUN",  # 习用语 used as noun (HMM)
    "j": "NOUN",  # 简称略语
    "jn": "NOUN",  # 简称略语 used as noun (HMM)
    # numerals
    "m": "NUM",  # 数词 (refined: NOUN when the word has no numeral character)
    "mg": "NUM",  # 数语素
    "mq": "NUM",  # 数量词
    # nouns
    "n": "NOUN",  # 名词
    "ng": "NOUN",  # 名语素
    "nr": "PROPN",  # 人名
    "nrfg": "PROPN",  # 人名
    "nrt": "PROPN",  # 音译人名
    "ns": "PROPN",  # 地名
    "nt": "PROPN",  # 机构团体
    "nz": "PROPN",  # 其他专名
    "s": "NOUN",  # 处所词
    "t": "NOUN",  # 时间词
    "tg": "NOUN",  # 时语素
    # prepositions
    "p": "ADP",  # 介词
    # classifiers
    "q": "NOUN",  # 量词
    "qe": "NOUN",  # (HMM)
    "qg": "NOUN",  # 量语素
    # pronouns
    "r": "PRON",  # 代词
    "rg": "PRON",  # 代语素
    "rr": "PRON",  # 人称代词
    "rz": "DET",  # 指示代词 (这)
    # particles
    "u": "PART",  # 助词
    "ud": "PART",  # 得
    "ug": "AUX",  # 过 (aspect)
    "uj": "PART",  # 的
    "ul": "AUX",  # 了 (aspect)
    "uv": "PART",  # 地
    "uz": "AUX",  # 着 (aspect)
    "y": "PART",  # 语气词 (吗/呢/吧)
    "yg": "PART",  # 语气语素
    # verbs
    "v": "VERB",  # 动词
    "vg": "VERB",  # 动语素
    "vi": "VERB",  # 不及物动词
    "vn": "NOUN",  # 名动词 (verbal noun)
    "vq": "VERB",  # 动词 (去浄/去过)
    # punctuation, other
    "w": "PUNCT",  # 标点 (PKU)
    "x": "X",  # 非语素字 (refined by Unicode category: PUNCT/SYM/NUM/X)
}

#: Penn Chinese Treebank tags (upper case, matched case-sensitively).
CTB_TO_UPOS: Dict[str, str] = {
    "AD": "ADV",
    "AS": "AUX",
    "BA": "ADP",
    "CC": "CCONJ",
    "CD": "NUM",
    "CS": "SCONJ",
    "DEC": "PART",
    "DEG": "PART",
    "DER": "PART",
    "DEV": "PART",
    "DT": "DET",
    "ETC": "PART",
    "FW": "X",
    "IJ": "INTJ",
    "JJ": "ADJ",
    "LB": "AUX",
    "LC": "ADP",
    "M": "NOUN",
    "MSP": "PART",
    "NN": "NOUN",
    "NR": "PROPN",
    "NT": "NOUN",
    "OD": "NUM",
    "ON": "INTJ",
    "P": "ADP",
    "PN": "PRON",
    "PU": "PUNCT",
    "SB": "AUX",
    "SP": "PART",
    "URL": "X",
    "VA": "ADJ",
    "VC": "AUX",
    "VE": "VERB",
    "VV": "VERB",
}

#: Penn (English) Treebank tags that do not collide with CTB tags.
PTB_TO_UPOS: Dict[str, str] = {
    "NNS": "NOUN",
    "NNP": "PROPN",
    "NNPS": "PROPN",
    "VB": "VERB",
    "VBD": "VERB",
    "VBG": "VERB",
    "VBN": "VERB",
    "VBP": "VERB",
    "VBZ": "VERB",
    "JJR": "ADJ",
    "JJS": "ADJ",
    "RB": "ADV",
    "RBR": "ADV",
    "RBS": "ADV",
    "IN": "ADP",
    "PRP": "PRON",
    "PRP$": "PRON",
    "WP": "PRON",
    "WDT": "DET",
    "WRB": "ADV",
    "MD": "AUX",
    "RP": "PART",
    "TO": "PART",
    "UH": "INTJ",
    "SYM": "SYM",
    "EX": "PRON",
    "PDT": "DET",
    "POS": "PART",
}

#: Spelled-out names (English and Chinese), compared after lower-casing and
#: turning ``_``/``-``/runs of spaces into one space.
POS_NAMES_TO_UPOS: Dict[str, str] = {
    # English
    "adjective": "ADJ",
    "adjectives": "ADJ",
    "adj": "ADJ",
    "adjs": "ADJ",
    "attributive": "ADJ",
    "adposition": "ADP",
    "preposition": "ADP",
    "postposition": "ADP",
    "prep": "ADP",
    "localizer": "ADP",
    "localiser": "ADP",
    "adverb": "ADV",
    "adverbs": "ADV",
    "adv": "ADV",
    "auxiliary": "AUX",
    "auxiliary verb": "AUX",
    "aux verb": "AUX",
    "modal": "AUX",
    "modal verb": "AUX",
    "aspect marker": "AUX",
    "coordinating conjunction": "CCONJ",
    "conjunction": "CCONJ",
    "conj": "CCONJ",
    "coord conj": "CCONJ",
    "subordinating conjunction": "SCONJ",
    "subordinator": "SCONJ",
    "sub conj": "SCONJ",
    "complementizer": "SCONJ",
    "determiner": "DET",
    "determinative": "DET",
    "demonstrative": "DET",
    "article": "DET",
    "interjection": "INTJ",
    "interj": "INTJ",
    "exclamation": "INTJ",
    "onomatopoeia": "INTJ",
    "noun": "NOUN",
    "nouns": "NOUN",
    "common noun": "NOUN",
    "nn": "NOUN",
    "classifier": "NOUN",
    "measure word": "NOUN",
    "measure": "NOUN",
    "quantifier": "NOUN",
    "numeral": "NUM",
    "number": "NUM",
    "cardinal number": "NUM",
    "cardinal": "NUM",
    "ordinal": "NUM",
    "ordinal number": "NUM",
    "particle": "PART",
    "modal particle": "PART",
    "structural particle": "PART",
    "pronoun": "PRON",
    "personal pronoun": "PRON",
    "proper noun": "PROPN",
    "proper name": "PROPN",
    "name": "PROPN",
    "proper": "PROPN",
    "punctuation": "PUNCT",
    "punctuation mark": "PUNCT",
    "punc": "PUNCT",
    "symbol": "SYM",
    "verb": "VERB",
    "verbs": "VERB",
    "other": "X",
    "foreign word": "X",
    "foreign": "X",
    "unknown": "X",
    "idiom": "VERB",
    # Chinese
    "名词": "NOUN",
    "普通名词": "NOUN",
    "名": "NOUN",
    "专有名词": "PROPN",
    "专名": "PROPN",
    "人名": "PROPN",
    "地名": "PROPN",
    "机构名": "PROPN",
    "机构团体": "PROPN",
    "组织机构": "PROPN",
    "其他专名": "PROPN",
    "时间词": "NOUN",
    "处所词": "NOUN",
    "方位词": "ADP",
    "名动词": "NOUN",
    "动名词": "NOUN",
    "动词": "VERB",
    "动": "VERB",
    "助动词": "AUX",
    "情态动词": "AUX",
    "能愿动词": "AUX",
    "系动词": "AUX",
    "副动词": "ADV",
    "形容词": "ADJ",
    "形": "ADJ",
    "区别词": "ADJ",
    "状态词": "ADJ",
    "副形词": "ADV",
    "名形词": "ADJ",
    "副词": "ADV",
    "副": "ADV",
    "介词": "ADP",
    "连词": "CCONJ",
    "并列连词": "CCONJ",
    "从属连词": "SCONJ",
    "助词": "PART",
    "结构助词": "PART",
    "语气词": "PART",
    "语气助词": "PART",
    "动态助词": "AUX",
    "时态助词": "AUX",
    "叹词": "INTJ",
    "感叹词": "INTJ",
    "拟声词": "INTJ",
    "象声词": "INTJ",
    "数词": "NUM",
    "数量词": "NUM",
    "数字": "NUM",
    "量词": "NOUN",
    "代词": "PRON",
    "人称代词": "PRON",
    "疑问代词": "PRON",
    "指示代词": "DET",
    "指示词": "DET",
    "限定词": "DET",
    "冠词": "DET",
    "标点": "PUNCT",
    "标点符号": "PUNCT",
    "符号": "SYM",
    "成语": "VERB",
    "习用语": "VERB",
    "习语": "VERB",
    "简称": "NOUN",
    "简称略语": "NOUN",
    "缩略语": "NOUN",
    "外文": "X",
    "外语": "X",
    "外来词": "X",
    "英文": "X",
    "其他": "X",
    "其它": "X",
    "未知": "X",
    "前缀": "PART",
    "后缀": "PART",
    "前接成分": "PART",
    "后接成分": "PART",
}

#: Chinese suffix rules tried (longest first) when no table matches,
#: e.g. ``及物动词`` -> VERB, ``抽象名词`` -> NOUN.
_ZH_SUFFIX_RULES = (
    ("专有名词", "PROPN"),
    ("助动词", "AUX"),
    ("代词", "PRON"),
    ("名词", "NOUN"),
    ("动词", "VERB"),
    ("形容词", "ADJ"),
    ("副词", "ADV"),
    ("介词", "ADP"),
    ("连词", "CCONJ"),
    ("助词", "PART"),
    ("数词", "NUM"),
    ("量词", "NOUN"),
    ("叹词", "INTJ"),
    ("标点", "PUNCT"),
)

_UPOS_SET = frozenset(UPOS_TAGS)
_CJK_ONLY = re.compile(f"^[{CJK_RANGES}]+$")
_SPLIT_RE = re.compile(r"[\s/|,;，；、()（）\[\]【】<>《》:：=+]+")
_NUMERAL_CHARS = frozenset(
    "0123456789〇零一二三四五六七八九十百千万亿兆两壹贰叁肆伍陆柒捌玖拾佰仟廿卅几半数０１２３４５６７８９"
)


def jieba_tag_to_upos(word: str, tag: str, table: Optional[Dict[str, str]] = None) -> str:
    """Map one jieba.posseg ``(word, tag)`` pair onto a Universal POS tag.

    word (str): The word as segmented.
    tag (str): The jieba/ICTCLAS tag.
    table (Optional[Dict[str, str]]): Tag table; defaults to ``JIEBA_TO_UPOS``.
    RETURNS (str): The UPOS tag (``X`` for unknown tags).
    """
    table = JIEBA_TO_UPOS if table is None else table
    if tag == "x":
        return char_class_upos(word, default=table.get("x", "X"))
    upos = table.get(tag)
    if upos is None:
        # Unseen sub-tags like "nrx": fall back to the first letter's class.
        upos = table.get(tag[:1], "X") if tag else "X"
    if tag == "m" and upos == "NUM" and not any(c in _NUMERAL_CHARS for c in word):
        return "NOUN"  # 年, 月, 个 ... are tagged m by jieba
    return upos


def char_class_upos(word: str, default: str = "X") -> str:
    """UPOS for a token from its Unicode categories: PUNCT if every character
    is punctuation, SYM if every character is a symbol (emoji included) or
    punctuation with at least one symbol, NUM if all are digits, else ``default``.
    """
    cats = [unicodedata.category(c) for c in word if not c.isspace()]
    # emoji modifiers / variation selectors / ZWJ are "Mn"/"Sk"/"Cf"
    cats = [c for c in cats if c not in ("Mn", "Cf", "Me")]
    if not cats:
        return default
    if all(c.startswith("P") for c in cats):
        return "PUNCT"
    if all(c[0] in "PS" for c in cats):
        return "SYM"
    if all(c.startswith("N") for c in cats):
        return "NUM"
    return default


def normalize_pos_tag(tag: str) -> Optional[str]:
    """Map one POS tag spelling (as an LLM or a tagger wrote it) onto UPOS.

    Tried in order: an exact UPOS tag; a spelled-out name (English or Chinese,
    case-insensitive: ``noun``, ``Noun``, ``ADJECTIVE``, ``名词``); an upper-case
    CTB/PTB tag matched case-sensitively (``NN``, ``VV``, ``NT`` = temporal
    noun); a jieba/ICTCLAS tag (``n``, ``nr``, ``vn``; ``nt`` = organisation);
    an upper-case UPOS spelling in other case (``Adj``, ``propn``); a Chinese
    suffix rule (``及物动词`` -> VERB); finally the parts of a compound
    spelling (``名词(n)``, ``NOUN/名词``) when all recognised parts agree.

    tag (str): The spelling.
    RETURNS (Optional[str]): The UPOS tag, or None when it is not recognised
        (callers keep such tags unchanged and report them).
    """
    if not isinstance(tag, str):
        return None
    upos = _normalize_simple(tag)
    if upos is not None:
        return upos
    parts = [p for p in _SPLIT_RE.split(tag.strip()) if p]
    if len(parts) > 1:
        found = {_normalize_simple(p) for p in parts} - {None}
        if len(found) == 1:
            return found.pop()
    return None


def _normalize_simple(tag: str) -> Optional[str]:
    raw = unicodedata.normalize("NFKC", tag).strip().strip("\"'`*.。:：")
    if not raw:
        return None
    if raw in _UPOS_SET:
        return raw
    key = re.sub(r"[\s_\-]+", " ", raw.lower()).strip()
    if key in POS_NAMES_TO_UPOS:
        return POS_NAMES_TO_UPOS[key]
    if raw in CTB_TO_UPOS:
        return CTB_TO_UPOS[raw]
    if raw in PTB_TO_UPOS:
        return PTB_TO_UPOS[raw]
    if raw in JIEBA_TO_UPOS:
        return JIEBA_TO_UPOS[raw]
    if raw.upper() in _UPOS_SET:
        return raw.upper()
    if key in JIEBA_TO_UPOS:  # "N", "Vn"
        return JIEBA_TO_UPOS[key]
    # "名词性" / "动词短语" style: strip common trailing words
    for suffix in ("性", "短语", "词组", "类"):
        if raw.endswith(suffix) and len(raw) > len(suffix):
            inner = _normalize_simple(raw[: -len(suffix)])
            if inner is not None:
                return inner
    if _CJK_ONLY.match(raw):
        for suffix, upos in _ZH_SUFFIX_RULES:
            if raw.endswith(suffix):
                return upos
    return None


__all__ = [
    "UPOS_TAGS",
    "JIEBA_TO_UPOS",
    "CTB_TO_UPOS",
    "PTB_TO_UPOS",
    "POS_NAMES_TO_UPOS",
    "jieba_tag_to_upos",
    "char_class_upos",
    "normalize_pos_tag",
]
