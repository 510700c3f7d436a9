"""A live component that keeps its config FILE open and re-reads it every 50 ms (a gateway
reloading its routes). Creates READY once it has read it; logs what it serves."""
import sys, time

path, ready = sys.argv[1], sys.argv[2]
f = open(path)
open(ready, "w").close()
while True:
    f.seek(0)
    conf = f.read()
    print(conf.strip().splitlines()[0] if conf.strip() else "EMPTY CONFIG", flush=True)
    time.sleep(0.05)
