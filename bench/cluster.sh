#!/bin/bash
# Cross-node delivery through Redis (docs/cluster.md) against one node alone.
#
#   bench/cluster.sh [BUILD_DIR]      (default: build)
#
# Starts its own redis-server (no persistence) and engines on loopback ports 18411-18413:
#   single:  one node (no --redis), publishers and subscribers on it;
#   cluster: three nodes with --redis, every publisher on node 1, subscribers spread over
#            nodes 2 and 3 (ringcast-load --pub-url / --url repeated), so every delivery
#            crosses Redis.
# Writes /tmp/ringcast-cluster-{single,cluster}.json and prints one line per case.
set -euo pipefail
B=${1:-build}
RP=16411; P1=18411; P2=18412; P3=18413
LOAD=(--connections 500 --rooms 10 --publishers 2 --rate 500 --size 128 --duration 8s --warmup 2s
      --quiet)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly no >/dev/null & pids+=($!)
sleep 0.5
"$B/engine/ringcast" --port $P1 --threads 1 --rate-limit 0 --max-connections 5000 2>/dev/null &
single=$!
sleep 0.5
"$B/loadgen/ringcast-load" "${LOAD[@]}" --url ws://127.0.0.1:$P1/ws \
  --json /tmp/ringcast-cluster-single.json || true
kill $single; wait $single || true
for p in $P1 $P2 $P3; do
  "$B/engine/ringcast" --port $p --threads 1 --rate-limit 0 --max-connections 5000 \
    --redis redis://127.0.0.1:$RP 2>/dev/null & pids+=($!)
done
sleep 1
"$B/loadgen/ringcast-load" "${LOAD[@]}" --pub-url ws://127.0.0.1:$P1/ws \
  --url ws://127.0.0.1:$P2/ws --url ws://127.0.0.1:$P3/ws \
  --json /tmp/ringcast-cluster-cluster.json || true
python3 - <<'PY'
import json
for n in ("single", "cluster"):
    d = json.load(open(f"/tmp/ringcast-cluster-{n}.json"))
    v, l = d["deliveries"], d["latency_us"]
    print(f"{n:8} delivered {v['delivered']} lost {v['lost']} dup {v['duplicate']} "
          f"ooo {v['out_of_order']} deliveries/s {v['per_s']:.0f} "
          f"p50 {l['p50'] / 1000:.2f} ms p99 {l['p99'] / 1000:.2f} ms")
PY
