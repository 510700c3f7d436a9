"""A live service with the habits logrotate expects: appends a line per request to
BASE/logs/app.log (O_APPEND) and reopens it on SIGHUP; holds its data file BASE/data/app.db open
read-write. Writes its pid to BASE/run/app.pid once ready. Any other signal has its default
action (SIGTERM ends it)."""
import os, signal, sys, time

base = sys.argv[1]
log_path = f"{base}/logs/app.log"
data = open(f"{base}/data/app.db", "r+b")
log = open(log_path, "a")


def reopen(signum, frame):
    global log
    log.close()
    log = open(log_path, "a")


signal.signal(signal.SIGHUP, reopen)
with open(f"{base}/run/app.pid.tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.replace(f"{base}/run/app.pid.tmp", f"{base}/run/app.pid")
n = 0
while True:
    log.write(f"{time.time():.3f} request {n} ok\n")
    log.flush()
    n += 1
    time.sleep(0.02)
