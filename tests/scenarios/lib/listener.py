"""A live TCP service on 127.0.0.1:PORT (a peer, a coordinator): counts connections and
bytes received into STATS (`connections bytes`), rewritten after every change."""
import socket, sys, threading

port, stats, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
conns = 0
received = 0

def save():
    with open(stats + ".tmp", "w") as f:
        f.write(f"{conns} {received}\n")
    import os
    os.replace(stats + ".tmp", stats)

def serve(c):
    global received
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        with lock:
            received += len(b)
            save()
    c.close()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(512)
with lock:
    save()
open(ready, "w").close()
while True:
    c, _ = s.accept()
    with lock:
        conns += 1
        save()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
