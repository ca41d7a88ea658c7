"""Error texts folded into bounded classes: one per kind of failure, never a secret."""

import pytest

from exporter.errorclass import (
    MAX_CLASS_CHARS,
    MAX_CLASSES,
    NO_ERROR_TEXT,
    OTHER_CLASS,
    bounded_class,
    error_class,
)
from exporter.logs import REDACTED, SecretRedactor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Timeout", "Timeout"),
        ("Timeout after 30000ms", "Timeout after <n>ms"),
        ("Task timed out after 3.02 seconds", "Task timed out after <n> seconds"),
        ("HTTP 503 from upstream", "HTTP <n> from upstream"),
        ("connect ECONNREFUSED 10.0.0.7:5432", "connect ECONNREFUSED <n>:<n>"),
        ("document 65a4f0c2e1b3a9d8c7f60123 not found", "document <id> not found"),
        ("request 3f2b1c9e-8d7a-4e6f-9b0a-1c2d3e4f5a6b failed", "request <id> failed"),
        ("bad pointer 0xDEADBEEF", "bad pointer <hex>"),
        ("sha deadbeefcafe1234 mismatch", "sha <id> mismatch"),
        (
            "Cannot read properties of undefined (reading 'id')",
            ("Cannot read properties of undefined (reading <str>)"),
        ),
        ('Duplicate key "alice@example.com"', "Duplicate key <str>"),
        ("no user alice@example.com", "no user <email>"),
        ("  TypeError:   x is   not a function  ", "TypeError: x is not a function"),
    ],
)
def test_numbers_ids_and_values_are_folded(text: str, expected: str) -> None:
    assert error_class(text) == expected


def test_the_same_failure_with_other_values_is_one_class() -> None:
    a = error_class("Order 1234 of user 'bob' failed after 3 retries (id 65a4f0c2e1b3a9d8c7f60123)")
    b = error_class("Order 98 of user 'eve' failed after 5 retries (id 65a4f0c2e1b3a9d8c7f60999)")
    assert a == b == "Order <n> of user <str> failed after <n> retries (id <id>)"


def test_a_stack_trace_is_its_first_line() -> None:
    text = "\n\n  Error: ETIMEDOUT\n    at Socket.<anonymous> (net.js:1:2)\n    at emit (x.js:9)"
    assert error_class(text) == "Error: ETIMEDOUT"
    assert error_class("Timeout\r\nretry 2") == "Timeout"


def test_a_very_long_error_is_cut_short() -> None:
    folded = error_class("Error: " + "x" * 100_000)
    assert len(folded) == MAX_CLASS_CHARS
    assert folded.endswith("…")
    assert folded.startswith("Error: xxx")


def test_a_cut_never_ends_inside_a_placeholder() -> None:
    folded = error_class("TypeError: Cannot read properties of undefined (reading 'id') at x")
    assert folded == "TypeError: Cannot read properties of undefined (reading…"


def test_non_ascii_stays_readable_and_control_characters_go() -> None:
    assert error_class("Zeitüberschreitung nach 30 s") == "Zeitüberschreitung nach <n> s"
    assert (
        error_class("タイムアウト ３０秒") == "タイムアウト <n>秒"
    )  # full-width digits are numbers
    assert error_class("Cafe\u0301 down") == "Café down"  # one form (NFC) for one text
    assert error_class("bad\x00byte\x1b[31m red") == "bad byte [<n>m red"
    cut = error_class("é" * 200)
    assert len(cut) == MAX_CLASS_CHARS
    assert cut.startswith("éé")


def test_no_text_is_a_class_of_its_own() -> None:
    assert error_class(None) == NO_ERROR_TEXT
    assert error_class("") == NO_ERROR_TEXT
    assert error_class(" \n\t\n") == NO_ERROR_TEXT


@pytest.mark.parametrize(
    "text",
    [
        "connect to postgres://app:s3cr3t-Pa55@db.internal:5432/app failed",
        "401 from API: Authorization: Bearer abcDEF123.ghi-JKL_mno",
        "bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
        "login failed: password=s3cr3t-Pa55 user=app",
        "config: {apiKey: s3cr3t-Pa55, region: eu}",
        "mongodb+srv://app:s3cr3t-Pa55@cluster0.mongodb.net: auth failed",
    ],
)
def test_credentials_in_the_text_are_redacted(text: str) -> None:
    folded = error_class(text)
    for part in ("s3cr3t", "Pa55", "abcDEF", "eyJ", "c2lnbmF0dXJl"):
        assert part not in folded, folded
    assert REDACTED in folded or "<str>" in folded


def test_the_exporters_own_secrets_are_redacted_before_anything_is_folded() -> None:
    redactor = SecretRedactor()
    redactor.add("tok-123456789")
    folded = error_class("upstream said tok-123456789 is invalid", redactor.redact)
    assert folded == f"upstream said {REDACTED} is invalid"


def test_a_function_keeps_a_few_classes_and_the_rest_is_other() -> None:
    kept: dict[str, int] = {}
    for n in range(MAX_CLASSES + 3):
        kept[bounded_class(f"error {chr(ord('a') + n)}", kept.keys())] = 1
    assert len(kept) == MAX_CLASSES + 1
    assert OTHER_CLASS in kept
    assert bounded_class("error a", kept.keys()) == "error a"  # a kept class stays itself
    assert bounded_class("error z", kept.keys()) == OTHER_CLASS
