"""HTML e-mail to plain text: tags to line breaks, scripts/styles/quoted blocks dropped,
entities decoded (stdlib regexes and ``html.unescape``; no parser dependency).
"""

from __future__ import annotations

import html
import re


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_HTML_TAGS = (
    "a|abbr|address|article|aside|b|base|bdi|bdo|big|blockquote|body|br|button|caption|center|"
    "cite|code|col|colgroup|dd|del|details|dfn|div|dl|dt|em|fieldset|figcaption|figure|font|"
    "footer|form|h[1-6]|head|header|hr|html|i|img|input|ins|kbd|label|legend|li|link|main|mark|"
    "meta|nav|o:p|ol|option|p|pre|q|s|samp|section|select|small|span|strike|strong|sub|summary|"
    "sup|table|tbody|td|textarea|tfoot|th|thead|time|title|tr|tt|u|ul|var|wbr"
)
_HTML_HINT = re.compile(r"<(?:/?(?:" + _HTML_TAGS + r")\b[^<>]*>|!--|!doctype)", re.I)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)|<!doctype[^>]*>", re.I | re.S)
_HTML_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?(?:</\1\s*>|$)", re.I | re.S)
_HTML_BLOCKQUOTE = re.compile(r"<blockquote\b.*(?:</blockquote\s*>|$)", re.I | re.S)
_HTML_BLOCK = re.compile(
    r"<(?:br|/?(?:p|div|li|tr|h[1-6]|table|ul|ol|dl|dt|dd|blockquote|pre|section|article|header|"
    r"footer|hr|address|center|form|fieldset|main|nav|aside|figure|details|summary|caption))\b[^<>]*>",
    re.I,
)
_HTML_CELL = re.compile(r"</?(?:td|th)\b[^<>]*>", re.I)
_HTML_ANY_TAG = re.compile(r"</?(?:" + _HTML_TAGS + r")\b[^<>]*>", re.I)
_ENTITY_HINT = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});", re.I)
_LINE_WS = re.compile(r"[ \t]*\n[ \t]*")
_HTML_DOCUMENT = re.compile(r"<(?:html|body|p|div|table|ul|ol|li|td|h[1-6])\b", re.I)


def looks_like_html(text: str) -> bool:
    """True when the text contains a known HTML tag, comment or doctype."""
    return "<" in text and _HTML_HINT.search(text) is not None


def html_to_text(text: str, *, drop_quotes: bool = False) -> str:
    """HTML to plain text: block tags become line breaks, script/style dropped, entities unescaped.

    In a real HTML document (with <p>, <div>, <table>, ... tags) source line breaks are layout
    and become spaces; text that only uses ``<br>`` keeps its own line breaks. With ``drop_quotes`` the ``<blockquote>`` (quoted reply) and everything after it is dropped.
    """
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_DROP.sub(" ", text)
    if drop_quotes and "blockquote" in text.lower():
        head = _HTML_BLOCKQUOTE.sub(" ", text)
        if head.strip():
            text = head
    if _HTML_DOCUMENT.search(text):
        text = _LINE_WS.sub(" ", text)
    text = _HTML_BLOCK.sub("\n", text)
    text = _HTML_CELL.sub(" ", text)
    text = _HTML_ANY_TAG.sub("", text)
    return html.unescape(text)
