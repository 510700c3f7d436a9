#!/usr/bin/env python3
"""A minimal ZooKeeper client for the scenarios' prod.sh/check.sh (no JVM to start for a check):
`zk.py PORT wait` (until the server serves), `zk.py PORT get PATH`, `zk.py PORT create PATH DATA`.
Speaks the jute protocol: a session handshake, then one request."""
import socket
import struct
import sys
import time


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def recv_frame(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise EOFError("closed")
        head += chunk
    (n,) = struct.unpack(">i", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise EOFError("closed")
        body += chunk
    return body


def string(b):
    return struct.pack(">i", len(b)) + b


def session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    # ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly
    s.sendall(frame(struct.pack(">iqiq", 0, 0, 10000, 0) + string(b"\0" * 16) + b"\0"))
    recv_frame(s)
    return s


def request(s, op, body):
    s.sendall(frame(struct.pack(">ii", 1, op) + body))
    reply = recv_frame(s)
    _xid, _zxid, err = struct.unpack(">iqi", reply[:16])
    return err, reply[16:]


def main():
    port, cmd = int(sys.argv[1]), sys.argv[2]
    if cmd == "wait":
        end = time.time() + 20
        while time.time() < end:
            try:
                s = session(port)
                if request(s, 3, string(b"/") + b"\0")[0] == 0:
                    return 0
            except (OSError, EOFError):
                time.sleep(0.1)
        return 1
    s = session(port)
    path = sys.argv[3].encode()
    if cmd == "get":
        err, body = request(s, 4, string(path) + b"\0")
        if err != 0:
            print(f"error {err}", file=sys.stderr)
            return 1
        (n,) = struct.unpack(">i", body[:4])
        sys.stdout.write(body[4 : 4 + max(n, 0)].decode())
        return 0
    if cmd == "create":
        acl = struct.pack(">i", 1) + struct.pack(">i", 31) + string(b"world") + string(b"anyone")
        err, _ = request(s, 1, string(path) + string(sys.argv[4].encode()) + acl + struct.pack(">i", 0))
        return 0 if err == 0 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
