"""A peer transfer: connect to 127.0.0.1:PORT ATTEMPTS times (waiting DELAY s, doubled each
time, between attempts) and send MIB mebibytes on the last connection."""
import socket, sys, time

port, attempts, delay, mib = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
chunk = b"\0" * 65536
for i in range(attempts):
    s = socket.create_connection(("127.0.0.1", port))
    if i + 1 < attempts:
        s.close()
        time.sleep(delay)
        delay *= 2
        continue
    left = int(mib * 1024 * 1024)
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(chunk[:n])
        left -= n
    s.close()
print(f"{attempts} connection(s), {mib} MiB sent")
