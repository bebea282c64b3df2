"""Ids that become workflow ids, Job names, label values and path components: DNS labels only."""

from __future__ import annotations

import re

from budeval.errors import UnsafeIdError

#: RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, at most 63 characters.
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")


def check_dns_label(value: object, field: str = "id") -> str:
    """Return ``value`` if it is a safe DNS label, else raise :class:`UnsafeIdError` naming the field."""
    if not isinstance(value, str):
        raise UnsafeIdError(f"must be a string, got {type(value).__name__}", field=field)
    if not DNS_LABEL.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise UnsafeIdError(
            f"{shown!r} is not a DNS label (a-z, 0-9 and '-', at most 63 characters, alphanumeric at both ends)",
            field=field,
        )
    return value
