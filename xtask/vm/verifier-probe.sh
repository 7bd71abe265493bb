#!/bin/bash
cd "$(dirname "$0")"
modprobe bonding max_bonds=0
modprobe veth
ip link add pb0 type bond mode active-backup miimon 10
ip link add pv0 type veth peer name pv0p
ip link set pv0 master pb0
ip link set pb0 up
mkdir -p /run/pl
EXABOND_VERIFIER_LOG=${EXABOND_VERIFIER_LOG:-verbose} RUST_LOG=exabond=debug timeout 900 ./exabond agent --bond pb0 --member-driver veth --page-dir /run/pl > /tmp/agent.log 2>&1 &
for i in $(seq 1 150); do
  sleep 4
  if ! kill -0 $! 2>/dev/null; then break; fi
  grep -q "published\|manag" /tmp/agent.log && sleep 5 && break
done
grep -a -B14 "processed" /tmp/agent.log | cut -c1-300 | head -40; grep -a -m1 -B120 "prohibited\|invalid\|unbounded\|too large\|misaligned" /tmp/agent.log | cut -c1-200; grep -a verified /tmp/agent.log | cut -c1-200
echo "agent log: $(wc -c < /tmp/agent.log) bytes; its last lines:"; grep -a -v "^mark_precise\|^last_idx\|^parent" /tmp/agent.log | tail -60 | cut -c1-240
echo PROBE-DONE
