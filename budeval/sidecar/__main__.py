"""``python -m budeval.sidecar --state X [--grpc-port P] [--http-port Q] [--app-port A]``: the sidecar on its own."""

from budeval.sidecar.embedded import main

if __name__ == "__main__":
    raise SystemExit(main())
