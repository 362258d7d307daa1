"""Label rules (Kubernetes syntax): one definition for the API, the CLI and the runtimes.

The controller refuses a bad label with these messages; the CNI plugin checks
``args.cni.labels`` and the Docker driver sorts a container's labels with the same rules
before they reach it. Only ``re`` is imported: the CNI plugin loads this on every exec.
"""

from __future__ import annotations

import re

LABELS_MAX = 64
LABEL_KEY_MAX = 63  # the name part of a key (Kubernetes syntax), as a value
LABEL_PREFIX_MAX = 253  # the optional DNS-subdomain prefix before '/'
LABEL_VALUE_MAX = 63
_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?"
_LABEL_NAME_RE = re.compile(rf"^{_LABEL_NAME}$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")


def check_label_key(key: str) -> str:
    """A Kubernetes label key: ``[prefix/]name``, the prefix a lowercase DNS subdomain of at
    most 253 characters, the name 1 to 63 of A-Z a-z 0-9 _ . - starting and ending with a
    letter or digit (``ValueError`` says which part is wrong)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > LABEL_PREFIX_MAX or not _LABEL_PREFIX_RE.fullmatch(prefix)):
        raise ValueError(
            f"{_shown(key)} is not a valid label key: its prefix before '/' must be a "
            f"lowercase DNS subdomain of at most {LABEL_PREFIX_MAX} characters "
            "(a-z 0-9 '-' '.', like example.com)"
        )
    if len(name) > LABEL_KEY_MAX or not _LABEL_NAME_RE.fullmatch(name):
        raise ValueError(
            f"{_shown(key)} is not a valid label key: the name (after the optional prefix/) "
            f"must be 1 to {LABEL_KEY_MAX} letters, digits, '_', '.' or '-', starting and "
            "ending with a letter or digit"
        )
    return key


def check_label_value(key: str, text: str) -> str:
    """A Kubernetes label value: empty, or 1 to 63 of A-Z a-z 0-9 _ . - starting and ending
    with a letter or digit."""
    if text and (len(text) > LABEL_VALUE_MAX or not _LABEL_NAME_RE.fullmatch(text)):
        raise ValueError(
            f"{_shown(text)} (label {key!r}) is not a valid label value: use at most "
            f"{LABEL_VALUE_MAX} letters, digits, '_', '.' or '-', starting and ending with a "
            "letter or digit (or nothing)"
        )
    return text


def label_error(key: object, value: object) -> str | None:
    """Why ``key=value`` is not a valid label, or None if it is."""
    if not isinstance(key, str) or not isinstance(value, str):
        return f"label {key!r}={value!r}: keys and values must be strings"
    try:
        check_label_key(key)
        check_label_value(key, value)
    except ValueError as exc:
        return str(exc)
    return None
