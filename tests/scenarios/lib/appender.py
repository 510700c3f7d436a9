"""A live writer: holds FILE open and appends `<tag> <n>` every 20 ms (a store, a WAL, an
ingest log). Creates READY once the first line is written. Line 0 is `<tag> 0`."""
import os, sys, time

path, ready, tag = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.dirname(path), exist_ok=True)
f = open(path, "a")
n = 0
while True:
    f.write(f"{tag} {n}\n")
    f.flush()
    if n == 0:
        open(ready, "w").close()
    n += 1
    time.sleep(0.02)
