"""A single-writer store: takes an flock on run/store.lock (held open while it runs), writes
run/store.pid, and appends `<pid> <n>` lines to data/store.db every 20 ms. Runs until killed,
or for STORE_RUN_SECONDS when set (a second instance in the scenario must end by itself)."""
import fcntl, os, sys, time

prod = sys.argv[1]
os.makedirs(f"{prod}/run", exist_ok=True)
os.makedirs(f"{prod}/data", exist_ok=True)
lock = open(f"{prod}/run/store.lock", "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit("store_server: another instance holds the lock")
with open(f"{prod}/run/store.pid", "w") as f:
    f.write(f"{os.getpid()}\n")
db = open(f"{prod}/data/store.db", "a")
end = time.time() + float(os.environ.get("STORE_RUN_SECONDS", "inf"))
n = 0
while time.time() < end:
    db.write(f"{os.getpid()} {n}\n")
    db.flush()
    n += 1
    time.sleep(0.02)
