"""A live worker: writes its pid to PIDFILE and a heartbeat line to LOG every 50 ms."""
import os, sys, time

pidfile, log = sys.argv[1], sys.argv[2]
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.replace(pidfile + ".tmp", pidfile)
out = open(log, "a")
while True:
    out.write(f"{time.time():.2f} ok\n")
    out.flush()
    time.sleep(0.05)
