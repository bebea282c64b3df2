"""The one credential policy: which credentials a request may name, and where an endpoint request may be sent.

A request never holds a key, only a reference (``model.source.api_key_secret``). Which references are allowed is the
operator's decision, recorded in a **registry** of credentials, each with the endpoint hosts its key may be sent to:

* Kubernetes: a Secret in the service's namespace labelled ``budeval.io/credential=true``, with the hosts in the
  annotation ``budeval.io/allowed-hosts`` (comma-separated). Only its metadata is read
  (:class:`budeval.backends.kubernetes.credentials.SecretCredentials`), never its data. A Secret without the label --
  the chart's own ClickHouse DSN, S3 keys, API token, another team's anything -- is not a credential.
* Local: the ``credentials`` setting / ``credentials_file`` (``{"name": ["host", ...]}``), see :class:`StaticRegistry`.

Hosts: ``api.openai.com`` (that host exactly), ``*.openai.azure.com`` (any subdomain, not the bare domain), ``*``
(any host). Matching is case-insensitive and ignores the port.

Every ``base_url`` (with or without a credential) must also stay out of a deny-list of networks a request has no
business reaching from inside the service's network: loopback, link-local (cloud metadata at 169.254.169.254),
unspecified, multicast, reserved, and the known metadata names. The host name is resolved and *every* address is
checked, so a DNS name for 127.0.0.1 is refused too; an operator lifts the deny-list for chosen networks with
``endpoint_allowed_networks`` (e.g. ``127.0.0.0/8`` for a model server on the same machine). What this cannot see:
a name that resolves differently when OpenCompass connects later (DNS rebinding) -- docs/security.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from budeval.config import Settings
from budeval.errors import PolicyError, ValidationError
from budeval.schemas.request import EndpointModel, EvalRequest

CREDENTIAL_LABEL = "budeval.io/credential"
ALLOWED_HOSTS_ANNOTATION = "budeval.io/allowed-hosts"
BASE_URL_FIELD = "model.source.base_url"
SECRET_FIELD = "model.source.api_key_secret"  # noqa: S105 (a field name)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``host -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str], list[str]]

DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: AWS/GCP/Azure/OpenStack metadata at 169.254.169.254
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.0/24",  # IETF protocol assignments (Oracle Cloud metadata 192.0.0.192)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "fe80::/10",  # link-local
        "fd00:ec2::/32",  # AWS metadata over IPv6 (fd00:ec2::254)
        "fd20:ce::254/128",  # Google Cloud metadata over IPv6
        "ff00::/8",  # multicast
    )
)
#: Metadata service names, refused whatever they resolve to (``localhost`` needs no entry: it resolves to loopback).
DENIED_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "metadata.azure.com"})
_LABEL = r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?"
#: A host name as clients resolve it: ASCII labels of letters, digits and inner ``-`` (IDNs in their ``xn--`` form).
_DNS_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
#: Query/fragment parameter names that carry a credential (``api_key``, ``api-key``, ``key``, ``access_token``,
#: ``token``, ``sig``/``signature`` of signed URLs, ``password``, ``secret``, ``auth``, ...), case-insensitive.
_SECRET_PARAM = re.compile(
    r"(?i)(^|[-_.])(key|api[-_]?key|apikey|token|access[-_]?token|sig|signature|secret|password|passwd|pwd|auth"
    r"|authorization|credentials?|code)$"
)
_HOST_PATTERN = re.compile(rf"^(\*|(\*\.)?{_LABEL}(\.{_LABEL})*|[0-9a-f:.]+)$")


@dataclass(frozen=True)
class Credential:
    """A registered credential: its name (the Secret's) and the hosts its key may be sent to."""

    name: str
    allowed_hosts: tuple[str, ...]


class CredentialRegistry(Protocol):
    """Looks a credential up by name: None when it is not registered (unknown and unregistered look the same).

    Raises :class:`~budeval.errors.TransientError` when the registry cannot be asked now (the caller retries).
    """

    def lookup(self, name: str) -> Credential | None: ...


def parse_hosts(text: str | Iterable[str], *, what: str) -> tuple[str, ...]:
    """Host patterns from an annotation (comma/space-separated) or a list; lower-cased. Raises ValidationError."""
    items = re.split(r"[,\s]+", text) if isinstance(text, str) else list(text)
    hosts = tuple(h.strip().lower().rstrip(".") for h in items if isinstance(h, str) and h.strip())
    for host in hosts:
        if not _HOST_PATTERN.match(host):
            raise ValidationError(f"{what}: {host[:80]!r} is not a host name, '*.domain' or '*'")
    return hosts


def credential_from_metadata(metadata: Mapping[str, object]) -> Credential | None:
    """A Secret's ``metadata`` -> a credential, or None unless labelled ``budeval.io/credential=true``."""
    labels = metadata.get("labels")
    if not isinstance(labels, dict) or labels.get(CREDENTIAL_LABEL) != "true":
        return None
    annotations = metadata.get("annotations")
    raw = annotations.get(ALLOWED_HOSTS_ANNOTATION, "") if isinstance(annotations, dict) else ""
    name = str(metadata.get("name") or "")
    try:
        hosts = parse_hosts(str(raw), what=f"Secret {name} annotation {ALLOWED_HOSTS_ANNOTATION}")
    except ValidationError:
        hosts = ()  # a broken annotation allows nothing; the rejection says the credential has no usable hosts
    return Credential(name, hosts)


class StaticRegistry:
    """The local registry: ``{name: [host patterns]}`` from the settings and the optional credentials file."""

    def __init__(self, entries: Mapping[str, Iterable[str]]) -> None:
        self._entries = {name: Credential(name, parse_hosts(hosts, what=f"credential {name}"))
                         for name, hosts in entries.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticRegistry:
        """``credentials`` merged with ``credentials_file`` (same shape); raises ValidationError for a bad file."""
        entries: dict[str, Iterable[str]] = dict(settings.credentials)
        if settings.credentials_file is not None:
            path = settings.credentials_file
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValidationError(f"cannot read the credentials file {path}: {type(exc).__name__}",
                                      field="credentials_file") from None
            if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
                raise ValidationError(f"{path}: must be a JSON object of name -> list of hosts",
                                      field="credentials_file")
            entries.update(doc)
        return cls(entries)

    def lookup(self, name: str) -> Credential | None:
        return self._entries.get(name)


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` matches one of the patterns (exact, ``*.domain`` for subdomains, ``*`` for any)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
    return False


def system_resolver(host: str) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), as the C library's resolver answers it."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 address
_V4_IN_LOW_BITS = (ipaddress.ip_network("::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))  # compatible, SIIT


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries in a transition form (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
    ``::a.b.c.d``, SIIT ``::ffff:0:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``, Teredo's
    client), or None. A packet to such an address may end up at that IPv4 address, so it is checked as that."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or (any(address in net for net in _V4_IN_LOW_BITS) and int(address) > 1):
        return low
    return None


def _denied(address: IPAddress, allowed: Iterable[IPNetwork]) -> bool:
    embedded = embedded_ipv4(address)
    if embedded is not None and _denied(embedded, allowed):
        return True
    if any(address in net for net in allowed if net.version == address.version):
        return False
    return any(address in net for net in DENIED_NETWORKS if net.version == address.version)


class EndpointPolicy:
    """Checks a request's endpoint model: a registered credential, a host it may go to, no denied address."""

    def __init__(
        self,
        registry: CredentialRegistry,
        *,
        allowed_networks: Iterable[str] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.registry = registry
        self.resolver = resolver
        try:
            self.allowed_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        except ValueError as exc:
            raise ValidationError(str(exc), field="endpoint_allowed_networks") from None

    def check(self, request: EvalRequest) -> None:
        """The request's endpoint model and endpoint judge (``judge.model.source``, the same rules): raises
        PolicyError (reject), or TransientError when the registry cannot be asked (retry)."""
        self._check_source(request.model.source, "model.source")
        if request.judge is not None:
            self._check_source(request.judge.model.source, "judge.model.source")
            _one_key(request)

    def _check_source(self, source: object, where: str) -> None:
        if not isinstance(source, EndpointModel):
            return
        url_field = f"{where}.base_url"
        host = self._host(source.base_url, url_field)
        if source.api_key_secret is not None:
            name = source.api_key_secret.name
            credential = self.registry.lookup(name)
            if credential is None:
                raise PolicyError(
                    f"{name!r} is not a registered credential (an operator registers one: docs/security.md)",
                    field=f"{where}.api_key_secret",
                )
            if not host_allowed(host, credential.allowed_hosts):
                raise PolicyError(
                    f"credential {name!r} may not be sent to host {host!r} (allowed: "
                    f"{', '.join(credential.allowed_hosts) or 'none'})",
                    field=url_field,
                )
        self._check_addresses(host, url_field)

    def _host(self, base_url: str, url_field: str = BASE_URL_FIELD) -> str:
        try:
            parts = urlsplit(base_url)
            host = (parts.hostname or "").rstrip(".")
            _ = parts.port  # a malformed port raises here
        except ValueError:
            raise PolicyError("is not a valid URL", field=url_field) from None
        if parts.username is not None or parts.password is not None:
            raise PolicyError("must not hold user name or password (use api_key_secret)", field=url_field)
        secret_params = [name for name, _ in parse_qsl(f"{parts.query}&{parts.fragment}", keep_blank_values=True)
                         if _SECRET_PARAM.search(name)]
        if secret_params:
            raise PolicyError(f"must not hold a credential in its query or fragment ({secret_params[0][:40]!r}; use"
                              " api_key_secret): a base_url is stored and shown", field=url_field)
        if not host:
            raise PolicyError("has no host", field=url_field)
        host = host.lower()
        if not _DNS_NAME.fullmatch(host):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                # URL parsers disagree on odd hosts (urllib keeps "a.example\\.b.example" whole, urllib3 and WHATWG
                # end it at the backslash): only a host every client reads the same way is checked and used.
                raise PolicyError(f"host {host[:80]!r} is not a DNS name or an IP address",
                                  field=url_field) from None
        return host

    def _addresses(self, host: str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        try:
            return [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host)]
        except (OSError, UnicodeError, ValueError):
            return []

    def _check_addresses(self, host: str, url_field: str = BASE_URL_FIELD) -> None:
        if host in DENIED_NAMES:
            raise PolicyError(f"host {host!r} is not reachable from evaluations", field=url_field)
        addresses = self._addresses(host)
        if not addresses:
            raise PolicyError(f"host {host!r} cannot be resolved", field=url_field)
        for address in addresses:
            if _denied(address, self.allowed_networks):
                raise PolicyError(
                    f"host {host!r} resolves to {address}, in a network evaluations may not reach (loopback, "
                    "link-local/metadata, reserved); an operator can allow it: endpoint_allowed_networks",
                    field=url_field,
                )


def _one_key(request: EvalRequest) -> None:
    """An OpenCompass run reads one API key (``OPENAI_API_KEY``, budeval/engine/render.py ``key='ENV'``): an
    endpoint model and an endpoint judge with keys must name the same credential (PolicyError otherwise)."""
    model, judge = request.model.source, request.judge.model.source if request.judge else None
    refs = [s.api_key_secret for s in (model, judge) if isinstance(s, EndpointModel) and s.api_key_secret]
    if len({(r.name, r.key) for r in refs}) > 1:
        raise PolicyError(
            "the model and the judge name different credentials; a run can carry one API key: use the same"
            " credential for both, or a keyless judge",
            field="judge.model.source.api_key_secret",
        )
