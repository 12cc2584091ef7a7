"""A local S3 server (moto) for the object-store tests, stopped and restarted on command.

usage: moto_ctl.py PORT

Starts moto's ThreadedMotoServer on 127.0.0.1:PORT and prints `up`. Then reads commands
from stdin, one per line: `stop` (the server stops listening: every request fails, as
when S3 is unreachable; prints `down`) and `start` (a new server on the same port prints
`up`). moto keeps its buckets in this process's memory, so a restart here finds every
object written before the stop, as a real S3 would. End of stdin ends the process.
"""

import sys

from moto.server import ThreadedMotoServer

port = int(sys.argv[1])


def serve():
    s = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s.start()
    print("up", flush=True)
    return s


server = serve()
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "stop" and server is not None:
        server.stop()
        server = None
        print("down", flush=True)
    elif cmd == "start" and server is None:
        server = serve()
if server is not None:
    server.stop()
