"""``python -m budeval.sidecar --state X --grpc-port P --http-port Q``: the embedded sidecar as its own process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from budeval.sidecar.server import EmbeddedSidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m budeval.sidecar", description=__doc__)
    parser.add_argument("--state", type=Path, required=True, help="SQLite file with the sidecar's durable state")
    parser.add_argument("--grpc-port", type=int, default=50001)
    parser.add_argument("--http-port", type=int, default=3500)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--app-url", default=None, help="the app's base URL for subscriptions (GET /dapr/subscribe)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sidecar = EmbeddedSidecar(args.state, args.grpc_port, args.http_port, app_url=args.app_url, host=args.host)
    sidecar.start()
    print(f"grpc_port={sidecar.grpc_port} http_port={sidecar.http_port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sidecar.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
