"""The Kubernetes credential registry: Secrets labelled ``budeval.io/credential=true``, read as metadata only.

The service asks the API server for a Secret as ``PartialObjectMetadata`` (``meta.k8s.io/v1``): the answer holds the
name, labels and annotations, never ``data``, so no key value ever reaches the service's memory. The policy itself
(label, hosts annotation, matching) is :mod:`budeval.policy.credentials`.
"""

from __future__ import annotations

from budeval.backends.kubernetes.api import JsonApi, core_path
from budeval.errors import NotFoundError, TerminalError, TransientError
from budeval.logs import get_logger
from budeval.policy.credentials import Credential, credential_from_metadata

#: Ask for metadata only (Kubernetes >= 1.15).
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class SecretCredentials:
    """:class:`~budeval.policy.credentials.CredentialRegistry` over the Secrets of one namespace."""

    def __init__(self, api: JsonApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def lookup(self, name: str) -> Credential | None:
        """The credential ``name``; None if the Secret is missing or not labelled (indistinguishable to the caller).

        Raises TransientError when the API server cannot be reached; a refusal (RBAC) is logged and reads as None.
        """
        try:
            meta = self.api.request("GET", core_path(self.namespace, "secrets", name), what="secret metadata",
                                    accept=METADATA_ONLY)
        except NotFoundError:
            return None
        except TransientError:
            raise
        except TerminalError as exc:
            get_logger(component="credentials").warning("credential lookup refused", secret=name, error=exc.message)
            return None
        metadata = meta.get("metadata")
        return credential_from_metadata(metadata) if isinstance(metadata, dict) else None
