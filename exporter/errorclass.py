"""A failed execution's `error` text, folded into a short class fit for a label value.

Mudbase's error texts are free text written by the function's own code: stack traces, IDs,
counts, quoted user data, sometimes a connection string with its password. A class keeps what
tells one failure from another and drops what makes every failure unique:
- the first non-blank line only (a stack trace's headline);
- known secrets (the exporter's own, as in every log line) and credential-looking parts
  (`user:password@` in URLs, `Bearer ...`, JWTs, `password=...` and the like) redacted;
- quoted values, e-mail addresses, UUIDs, hex strings (Mongo ObjectIds, hashes, `0x...`) and
  numbers folded into placeholders, whitespace and control characters collapsed;
- cut to `MAX_CLASS_CHARS` characters.
Nothing here does I/O; the per-function bound on distinct classes lives with the totals.
"""

import re
import unicodedata
from collections.abc import Callable, Collection

from exporter.logs import REDACTED, REDACTOR

MAX_CLASS_CHARS = 60
MAX_LINE_CHARS = 4096  # of the first line, redacted, before folding (the regexes' work)
MAX_CLASSES = 4  # distinct classes kept per function; later new ones are OTHER_CLASS
OTHER_CLASS = "other"
NO_ERROR_TEXT = "unknown"  # a failed execution without an error text

_FOLDS: tuple[tuple[re.Pattern[str], str], ...] = (
    # credentials first, before anything they hold is folded into something else
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), f"{REDACTED}@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"), REDACTED),
    (
        re.compile(
            r"(?i)\b((?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|auth(?:orization)?"
            r"|access[_-]?key|credentials?)\s*[=:]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\"[^\"]*\"|'[^']*'|`[^`]*`|“[^”]*”"), "<str>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (
        re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "<id>",
    ),
    (re.compile(r"(?i)\b0x[0-9a-f]+\b"), "<hex>"),
    (re.compile(r"(?i)\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b"), "<id>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
)
_SPACE = re.compile(r"\s+")


def error_class(text: str | None, redact: Callable[[str], str] = REDACTOR.redact) -> str:
    """The class of one failure's error text: never empty, at most `MAX_CLASS_CHARS`."""
    line = _first_line(text or "")
    if not line:
        return NO_ERROR_TEXT
    folded = redact(line)[:MAX_LINE_CHARS]
    for pattern, placeholder in _FOLDS:
        folded = pattern.sub(placeholder, folded)
    folded = _SPACE.sub(" ", folded).strip()
    if len(folded) > MAX_CLASS_CHARS:
        cut = folded[: MAX_CLASS_CHARS - 1]
        if cut.rfind("<") > cut.rfind(">"):  # never half a placeholder
            cut = cut[: cut.rfind("<")]
        folded = cut.rstrip() + "…"
    return folded or NO_ERROR_TEXT


def _first_line(text: str) -> str:
    """The first line with anything printable on it, in NFC, without control characters."""
    for line in text.splitlines():
        printable = "".join(
            c if c.isprintable() else " " for c in unicodedata.normalize("NFC", line)
        )
        if printable.strip():
            return printable.strip()
    return ""


def bounded_class(error: str, kept: Collection[str]) -> str:
    """`error` if it is one of a function's kept classes or there is room for one more,
    else `OTHER_CLASS`: a function never has more than `MAX_CLASSES` of them, and `other`."""
    if error in kept or sum(k != OTHER_CLASS for k in kept) < MAX_CLASSES:
        return error
    return OTHER_CLASS
