#!/bin/sh
# A JVM admin tool that only reads the live data (size and checksum).
PROD=$1
exec java -XX:-UsePerfData -XX:TieredStopAtLevel=1 -cp "$PROD/classes" DataStats "$PROD/app/data/app.db"
