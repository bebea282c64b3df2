"""The store a read command reads: the store itself, or -- while a running service holds the embedded chDB store --
the same queries through that service's HTTP API.

chDB is one process per data folder: a second process opening it fails with chDB's ``Cannot lock file .../status``.
So a command first probes that lock (:func:`budeval.storage.factory.embedded_store_held`); when it is held, it asks
the service found as ``submit`` finds it (budeval/cli/locate.py) and prints the same output. ``--verbose`` says on
stderr which path it took. A store held by some other process (no service answers, or the service's own store is
another one) is an error that says so.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from budeval.cli.locate import serve_info
from budeval.cli.remote_store import ServiceStore
from budeval.config import Settings
from budeval.errors import StoreUnavailableError, TransientError
from budeval.logs import configure as configure_logs
from budeval.storage.factory import as_store_dsn, embedded_store_held, open_existing_store, open_store, redact_dsn


def verbose_arg(p: argparse.ArgumentParser) -> None:
    """``-v/--verbose``: say on stderr which store path was used."""
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say on stderr whether the store was read directly or through the running service's API")


def say(args: argparse.Namespace, line: str) -> None:
    if getattr(args, "verbose", False):
        print(f"budeval: {line}", file=sys.stderr)


@contextmanager
def reading_store(
    args: argparse.Namespace, *, create: bool = True, log_level: str | None = None
) -> Iterator[Any]:
    """The store of ``--store`` (or the settings'), migrated and closed at the end; a :class:`ServiceStore` when a
    running service holds it. ``create=False``: None for an embedded store that was never created (nothing stored
    yet) -- ``plan`` and ``explain`` create nothing. Logs go to stderr (``log_level``: the commands' own)."""
    if log_level is None:
        configure_logs()
    else:
        configure_logs(log_level)
    # the HTTP client logs every request at INFO: through the service the command would print lines it does not
    # print reading the store directly (the output must be the same either way)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings.from_env()
    dsn = as_store_dsn(args.store or settings.resolved_store_dsn())
    shown = redact_dsn(dsn)
    if embedded_store_held(dsn):
        remote = _service_holding(settings, shown)
        say(args, f"the store {shown} is held by the running service; reading through its API at {remote.url}")
        yield remote
        return
    store = open_store(dsn) if create else open_existing_store(dsn)
    if store is None:
        say(args, f"the store {shown} does not exist yet (nothing stored)")
        yield None
        return
    say(args, f"reading the store {shown} directly")
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def _service_holding(settings: Settings, shown: str) -> ServiceStore:
    """The running service that holds the store ``shown``; a clear error when it is some other process."""
    remote = ServiceStore(settings)
    theirs = serve_info(settings).get("store")
    if not settings.api_url.strip() and theirs and theirs != shown:
        raise StoreUnavailableError(
            f"the store {shown} is held by another process (the service of this data dir uses {theirs})"
        ) from None
    try:
        remote.ping()
    except TransientError:
        raise StoreUnavailableError(
            f"the store {shown} is held by another process and no service answers at {remote.url} "
            "(stop that process, or start `budeval serve` / set BUDEVAL_API_URL)"
        ) from None
    return remote
