"""Personal data redaction: typed placeholders for everything that identifies a person.

``redact_pii(text)`` replaces, in English and German text, [URL], [EMAIL] (also obfuscated:
``name (at) example (dot) com``, ``jane at gmail.com``), [SECRET] (passwords, PINs, CVVs,
one-time codes, API keys and tokens after a cue, and key shapes such as ``sk-...``, ``AKIA...``,
JWTs), [DOB] (a date after a birth cue), [SSN], [ID_NUMBER] (Steuer-ID, Personalausweis,
passport, driving licence, NINO after a cue or by shape), [IBAN] (mod-97 valid, any case and
grouping), [CARD] (13-19 digits with any separators passing Luhn), [IP], [PHONE] and [NAME]
(after greetings and under sign-offs). It is idempotent and never raises on ``str`` input.

Used by ``ticket_triage.text.clean.clean_text`` (training and serving) and, again, on every text
sent to an LLM (``ticket_triage.decision.llm``). Stdlib regexes compiled at import; every
expensive rule is guarded by a cheap test. Recall and false-redaction rate are measured by
``tests/unit/text/test_pii.py`` (corpus ``tests/fixtures/pii/``) and ``benchmarks/bench_pii.py``.
"""

from __future__ import annotations

import ipaddress
import re

from ticket_triage.text.normalize import _coerce
from ticket_triage.text.signatures import _MAX_SIGNOFF_LINE, _PUNCT, _SIGNOFF_WORDS

__all__ = ["PLACEHOLDERS", "iban_valid", "luhn_valid", "redact_pii"]

PLACEHOLDERS: tuple[str, ...] = ("[EMAIL]", "[URL]", "[IBAN]", "[CARD]", "[IP]", "[PHONE]", "[NAME]",
                                 "[SECRET]", "[DOB]", "[SSN]", "[ID_NUMBER]")

# URL characters; parentheses only in balanced pairs ("wiki/A_(b)"), so "(see https://x.io)"
# keeps its closing bracket; trailing sentence punctuation is not part of the URL.
_URL = re.compile(
    r"\b(?:https?://|(?<![\w@.])www\.)"
    r"(?:[^\s<>\"'\[\]{}|\\^`()]|\([^\s<>\"'()]*\))*"
    r"(?:[^\s<>\"'\[\]{}|\\^`().,;:!?]|\([^\s<>\"'()]*\))",
    re.I,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,24}\b")
_IPV4 = re.compile(
    r"(?<![\w.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
    r"(?:/\d{1,2})?(?![\w]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+/.,-])(?:\+|00)?(?:\(\d{1,5}\)[ .-]?)?\d[\d .()/-]{4,20}\d(?![\w]|[.,]\d)"
)
_DATE_PREFIX = re.compile(
    r"(?:\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})(?:\D|$)"
)
_PHONE_SEP = re.compile(r"[ .()/-]+")
# software versions and builds in bug reports: 5.15.0-1041(-azure), 2023.11.12681021, 0.8.2023091501
_VERSION = re.compile(r"\d+(?:\.\d+){2,}(?:-\d+)?")
_CODE_POSITION = re.compile(r"(?:\.[A-Za-z]\w{0,4}|\d):$")  # "main.js:" or "14780:" right before the digits
_DOTS_ONLY = re.compile(r"[\d.]+")
_THOUSANDS = re.compile(r"\d{1,3}(?:[.,]\d{3})+|\d{1,2}(?: \d{3})+")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d ?[-/–] ?(?:19|20)\d\d")
_AMOUNT_BEFORE = re.compile(r"(?:[$€£¥₹]|\b(?:eur|usd|gbp|chf|sek|nok|dkk|pln))\s*$", re.I)
_AMOUNT_AFTER = re.compile(r"\s*(?:[$€£¥₹%]|(?:eur|usd|gbp|chf|euro|dollars?|pounds?)\b)", re.I)
_ID_CONTEXT = re.compile(
    r"(?:order|invoice|ticket|case|ref(?:erence)?|account|acct|customer|transaction|tracking|"
    r"serial|model|version|build|id|no|nr|number|bestell\w*|rechnung\w*|auftrag\w*|kunden\w*|"
    r"vorgang\w*|konto\w*|sendung\w*|commande|facture|pedido|factura|ordine|fattura|bestelling)"
    r"\s*(?:#|no\.?|nr\.?|number|nummer|id)?\s*[:#.]?\s*$",
    re.I,
)

# -- new detectors (issue 14) ----------------------------------------------------------

# IBAN in any case and grouping ("de89 3704 0044 0532 0130 00", "DE89-3704-...", one block):
# the pattern may run into the following words; _iban_sub keeps the longest mod-97 valid prefix.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-.]?[A-Za-z0-9]){11,32}")
# Card numbers with any separator (space, dash, dot, slash, underscore): Luhn decides.
_CARD = re.compile(r"(?<![\w.,])\d(?:(?:[ \-./_]|[ ]?[-–/][ ]?)?\d){12,22}(?!\w|[.,]\d)")
_CARD_SEP = re.compile(r"[^0-9]+")
# "name (at) example (dot) com", "name [at] example [dot] com", "name at gmail.com", "name @ x.de"
_OBF_AT = r"(?P<at>\s*[(\[{<]\s*(?i:at|ät|@)\s*[)\]}>]\s*|\s*@\s*)"
_BARE_AT = r"(?P<at>[ \t]+(?i:at)[ \t]+)"
# "name at domain.tld" only with a common top-level domain (stack traces read "15 at t.value").
_BARE_TLDS = frozenset(
    """com de org net io co uk at ch fr nl eu info me biz us edu gov es it pl se dk no fi be lu ie
    pt app dev email online""".split()
)
_OBF_DOT = r"(?:\s*[(\[{<]\s*(?i:dot|punkt|point|\.)\s*[)\]}>]\s*|\s+(?i:dot|punkt)\s+|\.)"
_OBF_DOMAIN = r"(?P<domain>[\w-]+(?:" + _OBF_DOT + r"[\w-]+)*" + _OBF_DOT + r"[A-Za-z]{2,24})\b"
_OBF_EMAIL = re.compile(r"(?<![\w.+-])(?P<local>[\w][\w.+-]*)" + _OBF_AT + _OBF_DOMAIN)
_BARE_EMAIL = re.compile(r"(?<![\w.+-])(?P<local>[\w][\w.+-]*)" + _BARE_AT + _OBF_DOMAIN)
_MAIL_PROVIDERS = frozenset(
    """gmail googlemail yahoo hotmail outlook live msn icloud me mac aol gmx web t-online
    proton protonmail pm posteo freenet arcor mail yandex zoho mailbox tutanota""".split()
)
_MONTHS = (
    r"(?i:jan(?:uary|uar)?|feb(?:ruary|ruar)?|m(?:ar(?:ch)?|ärz|aerz)|apr(?:il)?|ma[iy]|"
    r"june?|juni|july?|juli|aug(?:ust)?|sep(?:t(?:ember)?)?|o[ck]t(?:ober)?|nov(?:ember)?|"
    r"de[cz](?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{1,2}[./-]\s?\d{1,2}[./-]\s?(?:19|20)?\d{2}|(?:19|20)\d{2}[./-]\d{1,2}[./-]\d{1,2}"
    r"|\d{1,2}(?:st|nd|rd|th|\.)?\s+(?:of\s+)?" + _MONTHS + r",?\s+(?:19|20)\d{2}"
    r"|" + _MONTHS + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{2})"
)
# A date of birth: a date within a few words after a cue ("DOB:", "born on", "geboren am").
_DOB = re.compile(
    r"(?P<cue>(?i:date\s+of\s+birth|birth\s*date|birthday|d\.?o\.?b\b\.?|born|geburtsdatum"
    r"|geburtstag|geboren|geb\.|née?\s+le|fecha\s+de\s+nacimiento)[^\d\n\[]{0,30}?)(?P<date>" + _DATE + r")(?!\d)"
)
# ... or before a cue: "am 5. März 1964 geboren", "12/03/1985 (DOB)"
_DOB_AFTER = re.compile(
    r"(?<!\d)(?P<date>" + _DATE + r")(?P<cue>\s*,?\s*(?i:geboren\b|\(?(?:dob|d\.o\.b\.|geb\.|born)\)?))"
)
# Passwords, PINs, one-time codes, API keys and tokens after a cue.
_SECRET = re.compile(
    r"(?P<cue>\b(?i:(?P<pw>pass(?:wor[dt]|code|phrase|wort)|kennwort|pwd|pw|login\s+code)"
    r"|(?P<pin>pin(?:[\s-]?(?:code|nummer|number))?|geheimzahl|cvv2?|cvc2?|security\s+code"
    r"|sicherheitscode|prüfziffer|tan|otp|one[\s-]time\s+(?:code|password)|verification\s+code"
    r"|bestätigungscode|sms[\s-]?code)"
    r"|(?P<key>api[\s_-]?(?:key|token|secret)|access[\s_-]?(?:key|token)|secret(?:[\s_-]?key)?"
    r"|auth(?:entication)?[\s_-]?token|bearer|token|client[\s_-]?secret|private[\s_-]?key))\b"
    r"(?P<link>\s*[:=]\s*|\s+(?i:is|ist|lautet|was|war|wäre|would\s+be)\b\s*:?\s*"
    r"(?i:(?:now|currently|still|jetzt|noch|immer\s+noch|just)\s+)?|\s+))"
    r"(?P<q>[\"'`“‘„]?)(?P<tok>[^\s\"'`“”‘’\[\]<>]+?)(?=[\"'`”’]|[.,;)]*(?:\s|$))"
)
_SECRET_STOP = frozenset(
    """reset change changed expired expires not wrong incorrect invalid forgotten forgot vergessen
    falsch ungültig abgelaufen zurücksetzen ändern required optional missing empty none null nil
    undefined true false string str int number boolean bool any object field value here below
    above the a an my your our same new old again also still for from to of with and or but on in
    is was be been has have ist lautet war wäre would now currently still jetzt noch just field: ****** ******** *** xxxx xxx n/a""".split()
)
# Key shapes that are secrets without a cue (OpenAI, AWS, GitHub, Slack, Google, Stripe, JWT).
_KEY_SHAPE = re.compile(
    r"(?<![\w-])(?:sk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})(?![\w-])"
)
# US SSN: dashed always; spaced or bare only after a cue ("SSN", "social security number").
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_SSN_CUE = re.compile(
    r"(?P<cue>\b(?i:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)[^\d\n\[]{0,20}?)"
    r"(?P<id>\d{3}[ .\-]?\d{2}[ .\-]?\d{4})(?!\d)"
)
# National / personal id numbers after a cue: German Steuer-ID, Personalausweis, passport,
# driving licence, UK NINO by shape.
_ID_CUE = re.compile(
    r"(?P<cue>\b(?i:steuer[\s-]?id(?:entifikationsnummer)?|steuerliche\s+identifikationsnummer|"
    r"steuer[\s-]?identifikations[\s-]?nummer|idnr|tax\s+id(?:entification)?(?:\s+number)?|tin|"
    r"personalausweis(?:[\s-]?(?:nummer|nr\.?))?|ausweis(?:[\s-]?(?:nummer|nr\.?))|"
    r"(?:national\s+)?id(?:entity)?[\s-]?card(?:\s+(?:number|no\.?))?|passport(?:\s+(?:number|no\.?))?|"
    r"reisepass(?:[\s-]?(?:nummer|nr\.?))?|pass[\s-]?(?:nummer|nr\.?)|"
    r"driver'?s?\s+licen[cs]e(?:\s+(?:number|no\.?))?|führerschein(?:[\s-]?(?:nummer|nr\.?))?|"
    r"national\s+insurance(?:\s+(?:number|no\.?))?|nino|sozialversicherungsnummer|"
    r"rentenversicherungsnummer)\b[^\w\n\[]{0,4}(?:(?i:is|ist|lautet|was|number|nummer|no\.?|nr\.?)"
    r"[^\w\n\[]{0,3})?)(?P<id>[A-Za-z0-9](?:[ ]?[A-Za-z0-9]){5,13})(?!\w)"
)
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")


def _longest_valid(s: str, valid, lo: int, hi: int, tail_ok: bool) -> int:
    """End offset in ``s`` of the longest prefix with ``lo``..``hi`` alphanumerics that ends at
    a group boundary and passes ``valid`` (on its alphanumerics, upper-cased); -1 if none."""
    idx = [i for i, c in enumerate(s) if c.isalnum()]
    for n in range(min(len(idx), hi), lo - 1, -1):
        end = idx[n - 1] + 1
        if (end < len(s) and s[end].isalnum()) or (end == len(s) and not tail_ok):
            continue
        if valid("".join(s[i] for i in idx[:n]).upper()):
            return end
    return -1


def _iban_sub(m: re.Match[str]) -> str:
    s = m.group(0)
    tail_ok = not m.string[m.end() : m.end() + 1].isalnum()
    end = _longest_valid(s, iban_valid, 15, 34, tail_ok)
    return s if end < 0 else "[IBAN]" + s[end:]


def _card_sub(m: re.Match[str]) -> str:
    s = m.group(0)
    # Keep longest Luhn-valid prefix (an expiry date may follow the number: "4111 ... 1111 12/27").
    end = _longest_valid(s, luhn_valid, 13, 19, True)
    if end < 0:
        return s
    groups = [len(g) for g in _CARD_SEP.split(s[:end]) if g]
    # Printed groupings only (4-4-4-4[-3], 4-6-5, 4-6-4): dates, times and version numbers with
    # separators that pass Luhn by chance are left alone.
    if len(groups) > 1 and not (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4
                                or groups in ([4, 6, 5], [4, 6, 4])):
        return s
    return "[CARD]" + s[end:]


def _obf_email_sub(m: re.Match[str]) -> str:
    s, at, domain, local = m.group(0), m.group("at"), m.group("domain"), m.group("local")
    if not any(c.isalpha() for c in local):
        return s
    plain_at = at.strip().lower() == "at"
    plain_dots = not re.search(r"[(\[{<]|\s", domain)
    if (plain_at or at.strip() == "@") and re.split(r"\W+", domain.strip())[-1].lower() not in _BARE_TLDS:
        return s
    if plain_at and plain_dots:
        # "look at github.com" is not an address; "jane at gmail.com", "j.smith at acme.de" are.
        if domain.split(".")[0].lower() not in _MAIL_PROVIDERS and not re.search(r"[\d._+]", local):
            return s
    return "[EMAIL]"


def _bare_email_strict(m: re.Match[str]) -> str:
    if not any(c.isalpha() for c in m.group("local")):
        return m.group(0)
    return "[EMAIL]" if re.split(r"\W+", m.group("domain"))[-1].lower() in _BARE_TLDS else m.group(0)


def _secret_sub(m: re.Match[str]) -> str:
    tok, link, quoted = m.group("tok"), m.group("link"), bool(m.group("q"))
    low = tok.lower()
    keep = m.group(0)
    if tok.startswith(("$", "{", "<", "%", "*", "(")) or low in _SECRET_STOP or len(tok) > 200:
        return keep
    has_digit = any(c.isdigit() for c in tok)
    if m.group("pin"):
        ok = tok.isdigit() and 3 <= len(tok) <= 8 or (has_digit and tok.isalnum() and len(tok) <= 10)
    elif m.group("key"):
        ok = len(tok) >= 12 and has_digit and any(c.isalpha() for c in tok)
    else:
        symbolic = has_digit or any(not c.isalnum() for c in tok) or any(c.isupper() for c in tok[1:])
        ok = len(tok) >= 3 and (quoted or (":" in link or "=" in link) or symbolic)
        ok = ok and (symbolic or quoted or len(tok) >= 6)
    return m.group("cue") + m.group("q") + "[SECRET]" if ok else keep


def _secret_sub_strict(m: re.Match[str]) -> str:
    tok = m.group("tok")
    if not m.group("link").strip():
        return _secret_sub(m)
    if tok.startswith("[") or tok.lower() in _SECRET_STOP or len(tok) < 3:
        return m.group(0)
    if m.group("pin") and not any(c.isdigit() for c in tok):
        return m.group(0)
    return m.group("cue") + m.group("q") + "[SECRET]"


# Strict mode (text leaving the process, e.g. to an LLM): any remaining run of 6+ digits and any
# token mixing 10+ letters and digits goes too; topic classification does not need them.
_STRICT_DIGITS = re.compile(r"(?<![\w\[])\d(?:[ .\-/]?\d){5,}(?!\w)")
_STRICT_CODE = re.compile(r"(?<![\w\[-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{10,}(?![\w-])")


def _ssn_cue_sub(m: re.Match[str]) -> str:
    return m.group("cue") + "[SSN]"


def _id_cue_sub(m: re.Match[str]) -> str:
    tok = m.group("id")
    if not any(c.isdigit() for c in tok):
        return m.group(0)
    return m.group("cue") + "[ID_NUMBER]"


_ANY_DIGIT = re.compile(r"\d")


def _redact_structured(text: str, strict: bool = False) -> str:
    """The non-name detectors, in an order where a wider pattern runs before a narrower one."""
    lower = text.lower()
    if "http" in lower or "www." in lower:
        text = _URL.sub("[URL]", text)
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    if "@" in text or "at)" in lower or "at]" in lower or "at}" in lower or "at>" in lower:
        text = _OBF_EMAIL.sub(_obf_email_sub, text)
    if " at " in lower:
        text = _BARE_EMAIL.sub(_bare_email_strict if strict else _obf_email_sub, text)
    text = _KEY_SHAPE.sub("[SECRET]", text)
    text = _SECRET.sub(_secret_sub_strict if strict else _secret_sub, text)
    if _ANY_DIGIT.search(text):
        text = _DOB.sub(lambda m: m.group("cue") + "[DOB]", text)
        text = _DOB_AFTER.sub(lambda m: "[DOB]" + m.group("cue"), text)
        text = _SSN.sub("[SSN]", text)
        text = _SSN_CUE.sub(_ssn_cue_sub, text)
        text = _ID_CUE.sub(_id_cue_sub, text)
        text = _NINO.sub("[ID_NUMBER]", text)
    numberish = _NUMBERISH.search(text) is not None
    if numberish:
        text = _IBAN.sub(_iban_sub, text)
        text = _CARD.sub(_card_sub, text)
        if "." in text:
            text = _IPV4.sub("[IP]", text)
    if text.count(":") >= 2:
        text = _IPV6.sub(_ipv6_sub, text)
    if numberish:
        text = _PHONE.sub(_phone_sub, text)
    if strict:
        text = _STRICT_DIGITS.sub("[NUMBER]", text)
        text = _STRICT_CODE.sub("[CODE]", text)
    return text


_PHONE_CONTEXT = re.compile(
    r"\b(?i:phone|mobile|cell|tel\.?|telefon\w*|handy|fax|my|meine?)\s*(?:number|nummer|no\.?|nr\.?)?\s*[:#]?\s*$"
)
_GENERIC_ADDRESSEE = frozenset(
    """support team teams customer customers service services care sir sirs madam madame
    all everyone everybody there folks guys colleagues colleague friends friend manager managers
    helpdesk help desk it billing sales admin admins administrator technical tech department
    kundenservice kundendienst kundensupport support-team supportteam service-team serviceteam
    damen herren team-kollegen kollegen kolleginnen kollegin kollege mitarbeiter verantwortliche
    zusammen alle leute hallo servicedesk service-desk equipe équipe client clients monsieur
    equipo soporte atención cliente servizio clienti assistenza klantenservice klantendienst
    mr mrs ms miss dr prof herr frau sr sra team, hr legal finance accounts security office
    it-support it-team regards wishes grüße grüsse gruß gruss grüßen""".split()
)
_GENERIC_STEM = re.compile(
    r"support|service|team|kunde|dienst|desk|hilfe|help|abteil|department|customer|client|"
    r"kolleg|colleague|mitarbeit|staff|manage|admin|billing|sales|vertrieb|buchhalt|technik|"
    r"technical|soporte|assist|servizio|equipe|équipe|equipo|klant|grüß|grüss|regards"
)
_GREETING = re.compile(
    r"^([ \t]*(?i:hi|hello|hey|dear|good[ \t]+(?:morning|afternoon|evening)|greetings|hallo|"
    r"liebe[rs]?|sehr[ \t]+geehrte[rs]?|guten[ \t]+(?:tag|morgen|abend)|moin|servus|hoi|"
    r"bonjour|bonsoir|cher|chère|hola|estimad[oa]s?|querid[oa]|buongiorno|ciao|gentile|"
    r"caro|cara|beste|geachte|olá|ola|prezad[oa])[ \t]+"
    r"(?:(?i:mr|mrs|ms|miss|dr|prof|herr|frau|m|mme|mlle|sr|sra|sig|dhr|mevr)\.?[ \t]+){0,2})"
    r"([A-ZÀ-ÖØ-Þ][\w'’-]*(?:[ \t]+[A-ZÀ-ÖØ-Þ][\w'’-]*){0,2})"
    r"(?=[ \t]*[,!:;]|[ \t]*$)"
)
# "Thanks, Anna" (name on the sign-off line, after punctuation) or "Regards,\nJohn Doe"
# (a bare sign-off line, the name alone on the next non-blank line).
_PERSON = r"[A-ZÀ-ÖØ-Þ][\w'’-]*\.?(?:[ \t]+[A-ZÀ-ÖØ-Þ][\w'’-]*\.?){0,2}"
_SIGNOFF_SAME = re.compile(
    r"([ \t]*" + _SIGNOFF_WORDS + r"[ \t]*" + _PUNCT + r"+[ \t]*)(" + _PERSON + r")[ \t]*$"
)
_SIGNOFF_BARE = re.compile(r"[ \t]*" + _SIGNOFF_WORDS + r"[ \t]*" + _PUNCT + r"*[ \t]*$")
_NAME_LINE = re.compile(r"([ \t]*)(" + _PERSON + r")[ \t]*[.,]?[ \t]*$")
_NUMBERISH = re.compile(r"\d[\d .()/-]{5,}")


def luhn_valid(digits: str) -> bool:
    """Luhn checksum over a string of digits (other characters must be removed first)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 mod-97 check on an IBAN (spaces allowed, upper-case letters)."""
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        num = "".join(str(int(c, 36)) for c in rearranged)
        return int(num) % 97 == 1
    except ValueError:
        return False


def _ipv6_sub(m: re.Match[str]) -> str:
    s = m.group(0)
    if len(s) < 3 or not any(c.isdigit() for c in s):
        return s
    try:
        ipaddress.IPv6Address(s.split("%", 1)[0])
    except ValueError:
        return s
    return "[IP]"


def _phone_sub(m: re.Match[str]) -> str:
    s = m.group(0)
    digits = sum(c.isdigit() for c in s)
    if not 7 <= digits <= 15 or s.count("(") != s.count(")"):
        return s
    string = m.string
    before = string[max(0, m.start() - 30) : m.start()]
    if _AMOUNT_BEFORE.search(before) or _AMOUNT_AFTER.match(string, m.end()):
        return s
    if s[0] == "+" or s.startswith("00"):
        return "[PHONE]"
    if _PHONE_CONTEXT.search(before):
        return "[PHONE]"
    if (
        _ID_CONTEXT.search(before)
        or _DATE_PREFIX.match(s)
        or _THOUSANDS.fullmatch(s)
        or _YEAR_RANGE.fullmatch(s)
    ):
        return s
    groups = [g for g in _PHONE_SEP.split(s) if g]
    if _VERSION.fullmatch(s) and (len(groups[0]) == 1 or max(map(len, groups)) > 4):
        return s  # a version or build number (a dotted phone number has no 1-digit lead, no 5+ digit group)
    if _CODE_POSITION.search(before):
        return s  # a log field or a source position: [14780:0912/210820.464:ERROR, data.js:1035-1082
    trunk = s[0] == "0" or s[0] == "("
    if len(groups) == 1:
        # A bare digit run is a phone number only in local trunk format (0...).
        return "[PHONE]" if s[0] == "0" and 9 <= digits <= 13 else s
    if "." in s and _DOTS_ONLY.fullmatch(s) and not trunk and (s.count(".") != 2 or min(map(len, groups)) < 2):
        return s  # version / build numbers such as 10.0.19045.3803
    if not trunk and all(len(g) <= 2 for g in groups):
        return s  # "20 30 40 50": a list of small numbers
    if len(groups) > 6:
        return s
    return "[PHONE]"


def _is_generic_addressee(name: str) -> bool:
    """True for "Customer Support Team", "Kundendienstteam", "Sir": not a person's name."""
    for token in name.lower().split():
        token = token.strip(".,'’")
        if token in _GENERIC_ADDRESSEE or _GENERIC_STEM.search(token):
            return True
    return False


def _is_signoff_name(name: str) -> bool:
    return not (_is_generic_addressee(name) or (name.isupper() and len(name) <= 4))


def _redact_names(text: str) -> str:
    """[NAME] after greetings ("Hi Anna,") and with sign-offs ("Thanks, Anna" / "Regards,\nAnna")."""
    lines = text.split("\n")
    changed = False
    n = len(lines)
    for i, line in enumerate(lines):
        if not line or line[0] == "[":
            continue
        m = _GREETING.match(line)
        if m is not None:
            if not _is_generic_addressee(m.group(2)):
                lines[i] = m.group(1) + "[NAME]" + line[m.end() :]
                changed = True
            continue
        if len(line) > _MAX_SIGNOFF_LINE:
            continue
        m = _SIGNOFF_SAME.match(line)
        if m is not None:
            if _is_signoff_name(m.group(2)):
                lines[i] = m.group(1) + "[NAME]"
                changed = True
            continue
        if _SIGNOFF_BARE.match(line):
            j = i + 1
            if j < n and not lines[j].strip():
                j += 1
            if j < n:
                m = _NAME_LINE.match(lines[j])
                if m is not None and _is_signoff_name(m.group(2)):
                    lines[j] = m.group(1) + "[NAME]"
                    changed = True
    return "\n".join(lines) if changed else text




def redact_pii(text: str, *, strict: bool = False) -> str:
    """Replace personal data with typed placeholders (see the module docstring); idempotent.

    ``strict`` (for text that leaves the process: the LLM prompt) also takes addresses written
    "name at domain.tld" without checking the provider, any secret-cued token, any remaining run
    of 6+ digits ([NUMBER]) and any 10+ character token mixing letters and digits ([CODE]).
    """
    text = _coerce(text)
    if not text:
        return text
    return _redact_names(_redact_structured(text, strict))
