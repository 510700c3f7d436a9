"""A live metrics writer: appends a sample to LOG every 20 ms; a write that fails (a full
disk) is recorded in ERRORS. Creates READY after the first sample."""
import sys, time

log, errors, ready = sys.argv[1], sys.argv[2], sys.argv[3]
f = open(log, "a")
n = 0
while True:
    try:
        f.write(f"sample {n} {'x' * 200}\n")
        f.flush()
    except OSError as e:
        with open(errors, "a") as err:
            err.write(f"{time.time():.2f} {e}\n")
        f = open(log, "a")
    if n == 0:
        open(ready, "w").close()
    n += 1
    time.sleep(0.02)
