"""A fork server for the docs test: each `mlmkit ...` a documented block runs starts as a forked
copy of one process that imported torch, transformers and mlmkit once -- a fraction of a second
instead of the ~5 s a fresh interpreter spends importing them. The block still runs in a real
shell; only the `mlmkit` on its PATH is a shim (`write_shim`) that hands its argv, working folder,
environment and stdin/stdout/stderr (as file descriptors) to the server and exits with the
command's exit code. `python -m mlmkit`, `torchrun -m mlmkit` and Python blocks run as they are.

    python tests/docs_zygote.py SOCKET     # serve (prints "ready" once listening)
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
from pathlib import Path

HEADER = struct.Struct("!I")


def _warm() -> None:
    """Import what the commands import, so that the forks need not (imports only, no work)."""
    import torch

    torch.set_num_threads(1)
    import transformers  # noqa: F401
    from transformers import (AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM,  # noqa: F401
                              CanineModel, DistilBertForMaskedLM, ModernBertForMaskedLM, RobertaForMaskedLM)

    import mlmkit.char_mlm.build  # noqa: F401
    import mlmkit.char_mlm.task  # noqa: F401
    import mlmkit.cli  # noqa: F401
    import mlmkit.engine.loop  # noqa: F401
    import mlmkit.export  # noqa: F401
    import mlmkit.finetune  # noqa: F401
    import mlmkit.token_mlm.build  # noqa: F401
    import mlmkit.token_mlm.task  # noqa: F401


def _child(request: dict, fds: list[int]) -> None:
    code = 70
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        sys.argv = ["mlmkit", *request["argv"]]
        from mlmkit.cli import main

        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 -- printed as the command would print it
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    (size,) = HEADER.unpack(data[:HEADER.size])
    body = data[HEADER.size:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    return json.loads(body), list(fds)


def serve(path: str) -> None:
    """One thread (forking beside other threads is not safe): accept requests, fork, and reply
    with each child's exit code when it ends."""
    _warm()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(32)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([server], [], [], 0.02)
        if readable:
            conn, _ = server.accept()
            request, fds = _receive(conn)
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                _child(request, fds)
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                code = os.waitstatus_to_exitcode(status)
                conn.sendall(HEADER.pack(code if code >= 0 else 128 - code))
                conn.close()


SHIM = """#!{python} -S
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({path!r})
body = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [struct.pack("!I", len(body)) + body], [0, 1, 2])
reply = b""
while len(reply) < 4:
    chunk = s.recv(4 - len(reply))
    if not chunk:
        sys.exit(70)
    reply += chunk
sys.exit(struct.unpack("!I", reply)[0])
"""


def write_shim(folder: Path, socket_path: str) -> Path:
    """An executable `mlmkit` in `folder` that runs its command in the server."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "mlmkit"
    shim.write_text(SHIM.format(python=sys.executable, path=socket_path), encoding="utf-8")
    shim.chmod(0o755)
    return folder


if __name__ == "__main__":
    serve(sys.argv[1])
