#!/bin/bash
# pair.sh TAG TREE PROFILE RATE
TAG=$1; TREE=$2; PROF=$3; RATE=$4
mkdir -p /tmp/pair
case $TREE in base) D=/work/bench/base; MOD=bench;; *) D=/work/main; MOD=gmchain.bench;; esac
PORT=$((27000 + (RANDOM % 50) * 20))
echo "$TAG start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/pair/meta.txt
cd $D && timeout -s INT 300 .venv/bin/python -m $MOD --profile $PROF --rate $RATE --duration 30 --micro-seconds 1 --query-seconds 0 --base-port $PORT --json /tmp/pair/$TAG.json > /tmp/pair/$TAG.log 2>&1
echo "$TAG rc=$? end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/pair/meta.txt
