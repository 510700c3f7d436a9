#!/bin/sh
# The same tool in its "repair" mode: rewrites the live data file in place (O_TRUNC).
PROD=$1
exec java -XX:-UsePerfData -XX:TieredStopAtLevel=1 -cp "$PROD/classes" DataStats "$PROD/app/data/app.db" --repair
