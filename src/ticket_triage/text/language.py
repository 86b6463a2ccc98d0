"""Cheap, dependency-free language identification for support tickets.

``detect_language(text, prior=None)`` scores the prose of a text against small stopword
profiles (en, de, fr, es, it, nl, pt) plus a few telltale characters (ß, ñ, ã, ...) and returns
an ISO 639-1 code, or ``"und"`` when the text is too short or carries no signal (fewer than
three words, only placeholders/digits, or a tie no character can break).

Only prose counts (:func:`prose`): fenced and indented code, stack traces, log lines, URLs,
paths, e-mail addresses and snake_case identifiers are taken out first, so an English
issue full of code or logs is judged on its English sentences.

``prior`` is the language the data set is configured with (``data.language``; a bundle stores
it as ``Policy.language_prior``): the answer is another language only on clear evidence (at
least ``PRIOR_MIN_EVIDENCE`` stopwords of it and ``PRIOR_MARGIN`` times the prior's score),
and a text with no signal is taken to be in the prior. Well under a millisecond per ticket
(``benchmarks/bench_language.py``: measured against lingua-language-detector, which is ~7x
slower, flags one English GitHub issue fewer and misses half the non-English ones); meant for
routing ("unsupported_language") and slicing metrics, not linguistics.
"""

from __future__ import annotations

import re

__all__ = ["LANGUAGES", "UNDETERMINED", "detect_language", "prose"]

UNDETERMINED = "und"
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "pt")

MIN_WORDS = 3
_MAX_CHARS = 600  # the first ~100 words of prose decide; longer texts cost no more
_SCAN_CHARS = 8000  # prose is looked for in this much of the text
PRIOR_MIN_EVIDENCE = 3.0  # stopword hits another language needs to overrule the prior ...
PRIOR_MARGIN = 1.5  # ... and how many times the prior's score

# What is not prose: code fences and inline code, code and log lines, and tokens with a path
# separator, an @ or an underscore (URLs, paths, e-mail addresses, snake_case identifiers).
# camelCase and dotted names need no filter: they never spell a stopword.
_FENCE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_NOT_WORD_TOKEN = re.compile(r"[/\\@_]")  # paths, URLs, e-mail addresses, snake_case
_CODE_CHARS = "{}[]()<>=;:$#|\\/*&%@^~`\"'+"
_DROP_CODE_CHARS = str.maketrans("", "", _CODE_CHARS)
_LOG_LINE = re.compile(
    r"^\s*(?:at\s+\S+\s*\(|at\s+[\w.$<>]+\(|File \"|Traceback|\w*(?:Error|Exception)\b[:(]|"
    r"\[?\d{4}-\d{2}-\d{2}[ T]\d|\[?\d{2}:\d{2}:\d{2}|\[?(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|FATAL)\b|"
    r"[$>#]\s|//|/\*|\*\s|#include|import\s|from\s+\S+\s+import|def\s|class\s|function\b|const\s|let\s|var\s|"
    r"return\b|if\s*\(|for\s*\(|while\s*\()")


def _is_code_line(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if line.startswith(("    ", "\t")) or _LOG_LINE.match(s):
        return True
    symbols = len(s) - len(s.translate(_DROP_CODE_CHARS))
    letters = sum(map(str.isalpha, s))
    return (symbols >= 3 and symbols * 4 >= letters) or letters * 2 < len(s) - s.count(" ")


def prose(text: str, enough: int = 2 * _MAX_CHARS) -> str:
    """The natural-language part of a ticket (see the module docstring); stops once
    ``enough`` characters of prose are found."""
    if not text:
        return ""
    text = text[:_SCAN_CHARS]
    if "```" in text or "~~~" in text:
        text = _FENCE.sub("\n", text)
    if "`" in text:
        text = _INLINE_CODE.sub(" ", text)
    kept: list[str] = []
    size = 0
    for ln in text.splitlines():
        if not _is_code_line(ln):
            if _NOT_WORD_TOKEN.search(ln):  # most prose lines have no such token: keep them whole
                ln = " ".join(tok for tok in ln.split() if not _NOT_WORD_TOKEN.search(tok))
            kept.append(ln)
            size += len(ln)
            if size >= enough:
                break
    return "\n".join(kept)


# Frequent function words (and a few helpdesk staples). A word listed for several languages
# counts for each of them; the distinctive ones decide. Words are split at apostrophes, so
# French elisions count through "j", "qu", "c", "n" ("j'ai", "qu'il", "c'est", "n'ai").
_STOPWORDS: dict[str, str] = {
    "en": """the and is are was were to of a an in on at for from with by it its this that these
        those my your our their his her me you we they i am be been being have has had do does
        did not no can could would should will shall may might must please thanks thank hi hello
        dear what which who why how when where there here if or but so than then also just still
        any some all about into over after before because while get got want need help issue
        problem account card payment order received yet already since only very""",
    "de": """der die das den dem des ein eine einen einem einer eines und oder aber ist sind war
        waren bin bist sein nicht kein keine keinen ich du er sie es wir ihr ihnen ihre ihren
        ihrer mein meine meinen meiner mich mir uns unser unsere unseren zu zum zur mit von vom
        für auf aus bei nach über unter durch gegen ohne um im ins am an auch noch schon bereits
        wie was wer warum wann wo dass daß wenn weil ob habe hat haben hatte hatten wird werden
        wurde wurden kann können könnte könnten möchte möchten muss müssen soll sollte bitte
        danke vielen dank hallo sehr geehrte geehrter geehrtes grüße leider jedoch sowie diese
        dieser dieses diesem diesen sich nur immer mehr einige alle beim seit trotz etwa""",
    "fr": """le la les un une des du de et est sont était être avoir ai as avons avez ont je tu il
        elle nous vous ils elles ne pas plus mon ma mes ton ta tes son sa ses notre nos votre vos
        leur leurs ce cette ces cet qui que quoi dont où pour par avec sans dans sur sous chez au
        aux mais ou donc car si comme quand bonjour merci madame monsieur suis très déjà encore
        aussi toujours j qu c n y en peux pouvez veuillez compte carte commande""",
    "es": """el la los las un una unos unas de del al y o pero es son está están estoy era fue ser
        estar he ha han hemos tengo tiene tienen yo tú él ella nosotros ustedes usted mi mis tu
        tus su sus nuestro nuestra que qué quien cómo como cuando dónde por para con sin en sobre
        entre hasta desde no sí muy más ya todavía también porque hola gracias buenos buenas días
        cuenta tarjeta pedido puedo puede podrían esto este esta estos estas hay lo le les se me
        nos""",
    "it": """il lo la i gli le un uno una di del dello della dei degli delle da dal dalla in nel
        nella con su sul sulla per tra fra e ed o ma che chi cui non è sono era essere ho hai ha
        abbiamo avete hanno io tu lui lei noi voi loro mio mia miei mie tuo tua suo sua nostro
        nostra vostro questo questa questi quello quella come quando dove perché anche ancora già
        più molto ciao buongiorno grazie salve gentile vorrei posso può potete conto carta ordine
        mi ti si ci vi alla al""",
    "nl": """de het een en van in is op te dat die dit deze met voor niet zijn er maar om aan ook
        als dan bij nog naar uit tot door over wat wie waarom wanneer hoe ik je jij u uw wij we
        ze zij hij mijn onze ons hun heb hebt heeft hebben had was waren ben bent wordt worden
        werd kan kunt kunnen wil wilt zou zouden moet moeten al geen graag bedankt dank hallo
        goedemorgen groeten alstublieft beste rekening kaart bestelling omdat nu wel""",
    "pt": """o a os as um uma uns umas de do da dos das no na nos nas em por pelo pela para com
        sem e ou mas que é são está estão estou era foi ser estar tenho tem têm eu você vocês
        ele ela nós meu minha meus minhas seu sua seus suas nosso nossa não sim muito mais já
        ainda também porque como quando onde olá obrigado obrigada bom dia conta cartão pedido
        posso pode isso isto esse essa este esta ao aos me se lhe""",
}

# word -> indices of the languages it belongs to
_INDEX: dict[str, tuple[int, ...]] = {}
for _i, _lang in enumerate(LANGUAGES):
    for _w in _STOPWORDS[_lang].split():
        _INDEX[_w] = _INDEX.get(_w, ()) + (_i,)
del _i, _lang, _w

# Telltale characters: (character, language index, bonus); counted once per text.
_CHAR_HINTS: tuple[tuple[str, int, float], ...] = (
    ("ß", 1, 2.0), ("ä", 1, 1.0), ("ö", 1, 1.0), ("ü", 1, 1.0),
    ("ñ", 3, 2.0), ("¿", 3, 2.0), ("¡", 3, 2.0),
    ("ã", 6, 2.0), ("õ", 6, 2.0), ("ç", 6, 0.5), ("ç", 2, 0.5),
    ("è", 2, 0.5), ("è", 4, 0.5), ("ê", 2, 0.5), ("ê", 6, 0.5), ("à", 2, 0.5), ("à", 4, 0.5),
    ("œ", 2, 2.0), ("ù", 2, 1.0), ("ò", 4, 1.0), ("ì", 4, 1.0), ("ij", 5, 1.0),
)
# Word endings for words not in any stopword list: weak evidence that decides short texts
# ("Support needed", "Fehler beim Absturz beheben").
_SUFFIX_WEIGHT = 0.4
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "en": ("ing", "ed", "ly", "ness", "ght", "ould", "ies", "ful", "less", "tion", "sion"),
    "de": ("ung", "keit", "heit", "lich", "isch", "schaft", "chen", "ern", "ieren", "tz", "ck"),
    "fr": ("eux", "eaux", "oir", "eur", "ée", "és", "ais", "ait", "ez", "tion", "ment"),
    "es": ("ción", "ciones", "dad", "ado", "ido", "mos", "ía", "ando", "iendo"),
    "it": ("zione", "zioni", "mente", "ità", "are", "ere", "ire", "ato", "ito", "etto", "gli"),
    "nl": ("lijk", "heid", "ij", "aag", "oek", "eer", "tje", "ijn"),
    "pt": ("ção", "ções", "ões", "ão", "ém", "ado", "mente", "inho"),
}
_SUFFIX_INDEX: dict[str, tuple[int, ...]] = {}
for _i, _lang in enumerate(LANGUAGES):
    for _sfx in _SUFFIXES[_lang]:
        _SUFFIX_INDEX[_sfx] = _SUFFIX_INDEX.get(_sfx, ()) + (_i,)
del _i, _lang, _sfx
_SUFFIX_LENGTHS = tuple(sorted({len(k) for k in _SUFFIX_INDEX}, reverse=True))

_WORD = re.compile(r"[^\W\d_]+")
_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]|<[a-z_]+>")


def _scores(text: str) -> tuple[list[float], list[str]] | None:
    sample = text[:_MAX_CHARS]
    if "[" in sample or "<" in sample:
        sample = _PLACEHOLDER.sub(" ", sample)
    lowered = sample.lower()
    words = _WORD.findall(lowered)
    if len(words) < MIN_WORDS:
        return None
    scores = [0.0] * len(LANGUAGES)
    unknown: list[str] = []
    for w, langs in zip(words, map(_INDEX.get, words)):
        if langs is None:
            unknown.append(w)
        else:
            for i in langs:
                scores[i] += 1.0
    return scores, unknown


def _decide(scores: list[float], unknown: list[str], lowered: str) -> str:
    ranked = sorted(scores, reverse=True)
    if ranked[0] >= 3.0 and ranked[0] >= 1.5 * ranked[1]:
        return LANGUAGES[scores.index(ranked[0])]
    # Short or mixed text: add telltale characters and word endings, then decide.
    for ch, i, bonus in _CHAR_HINTS:
        if ch in lowered:
            scores[i] += bonus
    for w in unknown:
        if len(w) >= 5:
            for n in _SUFFIX_LENGTHS:
                sfx = _SUFFIX_INDEX.get(w[-n:])
                if sfx is not None:
                    for i in sfx:
                        scores[i] += _SUFFIX_WEIGHT
                    break
    top = max(scores)
    if top < 2 * _SUFFIX_WEIGHT or scores.count(top) > 1:
        return UNDETERMINED
    return LANGUAGES[scores.index(top)]


def detect_language(text: str, prior: str | None = None) -> str:
    """Best-scoring language code among ``LANGUAGES`` for the prose of ``text``, or ``"und"``
    without enough signal. With ``prior`` (a code in ``LANGUAGES``), another language needs
    clear evidence, and no signal means the prior (module docstring)."""
    if not text or not isinstance(text, str):
        return prior if prior in LANGUAGES else UNDETERMINED
    prior = prior if prior in LANGUAGES else None
    body = prose(text)
    got = _scores(body)
    if got is None:
        return prior or UNDETERMINED
    scores, unknown = got
    lang = _decide(list(scores), unknown, body[:_MAX_CHARS].lower())
    if prior is None or lang == prior:
        return lang
    if lang == UNDETERMINED:
        return prior
    other, mine = scores[LANGUAGES.index(lang)], scores[LANGUAGES.index(prior)]
    return lang if other >= PRIOR_MIN_EVIDENCE and other >= PRIOR_MARGIN * mine else prior
