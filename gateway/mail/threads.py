"""Thread detection helpers: which earlier messages a new email answers, and subject keys.

Pure, like :mod:`gateway.mail.mime`.  Headers first (``shared/reference/domain.md`` §4.4):
:func:`thread_references` lists the Message-IDs to look up, In-Reply-To first.  When none is
known, the caller falls back to :func:`normalize_subject`, a key equal for "Hello" and
"Re: AW: Fwd: Hello".

Subject rules (all case-insensitive, after Unicode NFKC, which turns fullwidth letters and the
fullwidth colon U+FF1A of CJK mailers into ASCII):

* A leading run of reply/forward **markers** is stripped, in many languages: the word, an
  optional count (``Re[2]:``, ``Re(2):``, ``Re^2:``), then a colon (``RE :``, as French
  typography puts it, too).  ``RE``, ``FW`` and ``FWD`` may also end in ``>`` or a dash
  followed by a space (``Re - Hello``).  The one-letter Italian markers ``R:`` and ``I:``
  count only with a colon right after the letter, so "I need help" and "R2D2" stay intact.
* Bracketed **tags** (``[users]``, ``[Ticket #123]``) met in that leading run are kept, but
  moved to the front in order of first appearance, once each: clients put "Re:" before or
  after a list's tag ("Re: [users] Hi", "[users] Re: Hi"), and a ticket number tells two
  conversations with the same words apart.  Tags that mail gateways add on the way in
  (``[EXTERNAL]``, ``[SPAM]``...) are dropped, since the original never had them.
* A trailing ``(fwd)`` (Pine's forward marker) is dropped.
* White space is collapsed and the result casefolded, so it can serve as a key.

A word followed by a colon at the start of a subject is a marker only if it is in the list:
"Order: 123" stays "order: 123".  Short markers such as ``RES:`` or ``REF:`` may, rarely, be
the start of a real subject; they are stripped all the same, as mail clients do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from gateway.mail.mime import ParsedEmail

#: Reply markers: RE; German AW; Nordic SV, VS (Finnish); Dutch Antw; Portuguese RES;
#: Italian R, RIF; Polish Odp; Turkish YNT; Greek ΑΠ, ΣΧΕΤ; Hebrew השב; Arabic رد;
#: Hungarian VÁ; Welsh/Latvian ATB; Lithuanian ATS; Indonesian BLS; Chinese 回复, 答复, 回覆;
#: Japanese 返信; Korean 회신, 답장.
REPLY_MARKERS = (
    "re", "aw", "sv", "vs", "antw", "res", "r", "rif", "odp", "ynt", "απ", "σχετ", "השב", "رد",
    "vá", "atb", "ats", "bls", "回复", "答复", "回覆", "返信", "회신", "답장",
)  # fmt: skip
#: Forward and reference markers: FW, FWD; German WG; Swedish VB; Finnish VL; Icelandic FS;
#: Spanish RV; French TR, REF; Italian I; Dutch Doorst; Portuguese ENC; Polish PD; Turkish
#: İLT; Greek ΠΡΘ; Hebrew הועבר; Hungarian TOV; Latvian PĀRS; Lithuanian PRS; Welsh YML;
#: Indonesian TRS; Chinese 转发, 轉寄; Japanese 転送; Korean 전달.
OTHER_MARKERS = (
    "fw", "fwd", "wg", "vb", "vl", "fs", "rv", "tr", "ref", "i", "doorst", "enc", "pd", "İLT",
    "ilt", "πρθ", "הועבר", "tov", "pārs", "prs", "yml", "trs", "转发", "轉寄", "転送", "전달",
)  # fmt: skip
#: Tags that mail gateways add to inbound mail: not part of the conversation's subject.
NOISE_TAGS = frozenset(
    {"external", "ext", "external email", "external sender", "spam", "possible spam", "caution"}
)


def _fold(text: str) -> str:
    """Compatibility-normalised, casefolded, single-spaced ``text``: the form keys compare.

    NFKC runs again after casefolding, which can undo it (the Unicode "NFKC_Casefold" idea).
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def _marker_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """A regex matching one leading marker from ``words`` and the spaces after it."""
    folded = {_fold(word) for word in words}
    long_words = sorted((w for w in folded if len(w) > 1), key=len, reverse=True)
    short = "".join(sorted(w for w in folded if len(w) == 1))
    dashed = "|".join(w for w in ("fwd", "fw", "re") if w in folded)
    count = r"(?:\[\d+\]|\(\d+\)|\^\d+)?"
    forms = [rf"(?:{'|'.join(map(re.escape, long_words))})\s?{count}\s?:"]
    if dashed:
        forms.append(rf"(?:{dashed}){count}\s?(?:>|-(?=\s))")
    if short:
        forms.append(rf"[{short}]:")
    return re.compile(rf"(?:{'|'.join(forms)})\s*")


_ANY_MARKER = _marker_pattern(REPLY_MARKERS + OTHER_MARKERS)
_REPLY_MARKER = _marker_pattern(REPLY_MARKERS)
_TAG = re.compile(r"\[([^\[\]]{1,80})\]\s*")
_FWD_SUFFIX = re.compile(r"(?:\s*\(fwd\))+$")


def normalize_subject(subject: str) -> str:
    """The thread key of a subject: markers stripped, tags kept in front, casefolded."""
    text = _fold(subject)
    tags: list[str] = []
    while True:
        if marker := _ANY_MARKER.match(text):
            text = text[marker.end() :]
        elif tag := _TAG.match(text):
            name = tag.group(1).strip()
            if name and name not in NOISE_TAGS and f"[{name}]" not in tags:
                tags.append(f"[{name}]")
            text = text[tag.end() :]
        else:
            break
    text = _FWD_SUFFIX.sub("", text)
    return " ".join([*tags, text]).strip()


def reply_subject(subject: str, prefix: str = "Re:") -> str:
    """The subject of our reply: ``subject`` itself when it starts with a reply marker (in any
    language listed above), else ``prefix`` and the subject.  "Fwd: x" gives "Re: Fwd: x"."""
    text = subject.strip()
    if _REPLY_MARKER.match(_fold(text)):
        return text
    return f"{prefix} {text}" if text else prefix


def thread_references(parsed: ParsedEmail) -> list[str]:
    """The Message-IDs to look up to find the thread, most specific first: In-Reply-To, then
    References from last (the parent) to first (the root), each once."""
    ids = [parsed.in_reply_to, *reversed(parsed.references)]
    return list(dict.fromkeys(i for i in ids if i))
