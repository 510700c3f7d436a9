#!/bin/sh
# Where did the disk go? The usual look, read-only.
PROD=$1
du -sh "$PROD"/app/*
df -h "$PROD"
ls -laS "$PROD/app/data" "$PROD/app/logs"
