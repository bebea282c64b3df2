"""``python -m budeval.sidecar --state X [--grpc-port P] [--http-port Q] [--app-port A]``: the sidecar on its own.

In a pod it is its container's PID 1, and the kernel drops a signal that PID 1 has no handler for (pid_namespaces(7)):
a SIGTERM that arrived before the handler existed -- during the seconds of importing gRPC and the Dapr SDK, or while
the sidecar opened its state -- was lost, and the pod then waited its whole terminationGracePeriod for SIGKILL. So the
handlers are installed here, before anything heavy is imported, and ``main`` honours a stop requested meanwhile.
After an orderly stop the process leaves with ``os._exit``: the state is closed by then, and a gRPC handler thread
still blocked in a client's call (the server's thread pool is joined at interpreter exit) must not hold it.
"""

import os
import signal
import sys
import threading

STOP = threading.Event()
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *_: STOP.set())

if __name__ == "__main__":
    from budeval.sidecar.embedded import main

    code = main(stop=STOP)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
