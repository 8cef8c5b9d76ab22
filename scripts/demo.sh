#!/usr/bin/env bash
# Runs aiops (all-in-one, embedded store, the shipped rules) and the
# simulated workflow engine with the demo scenario, and says what to look
# at. Both stop on Ctrl-C. Used by `make demo`; expects bin/aiops and
# bin/workflow-sim.
#
#   DEMO_DATA    data directory                  (default ./data/demo)
#   DEMO_SCENARIO  scenario file                 (default deploy/sim/scenarios/demo.yaml)
#   DEMO_INTERVAL  simulator export interval     (default 5s)
set -euo pipefail

BIN=${BIN:-bin}
DATA=${DEMO_DATA:-data/demo}
SCENARIO=${DEMO_SCENARIO:-deploy/sim/scenarios/demo.yaml}
INTERVAL=${DEMO_INTERVAL:-5s}
API=http://localhost:9090
SIM=http://localhost:8088

mkdir -p "$DATA/aiops"
if [ ! -s "$DATA/sim.token" ]; then
	(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$DATA/sim.token")
fi

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN/aiops" serve --config deploy/sim/aiops.yaml --data-dir "$DATA/aiops" >"$DATA/aiops.log" 2>&1 &
pids+=($!)
echo "aiops starting (log: $DATA/aiops.log) ..."
for _ in $(seq 1 120); do
	if curl -sf "$API/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		echo "aiops did not start:" >&2
		tail -20 "$DATA/aiops.log" >&2
		exit 1
	fi
	sleep 0.5
done
curl -sf "$API/readyz" >/dev/null || { echo "aiops not ready after 60s" >&2; exit 1; }

"$BIN/workflow-sim" --otlp-endpoint 127.0.0.1:4317 --control-addr 127.0.0.1:8088 \
	--token-file "$DATA/sim.token" --scenario "$SCENARIO" --start now --export-interval "$INTERVAL" \
	>"$DATA/workflow-sim.log" 2>&1 &
pids+=($!)

cat <<MSG

aiops and the simulated workflow engine are running; Ctrl-C stops both.
The demo scenario ($SCENARIO) injects a fault every 15-20 minutes,
the first one (a traffic surge) 3 minutes from now.

  aiops token:        AIOPS=\$(cat $DATA/aiops/admin.token)
  simulator token:    SIM=\$(cat $DATA/sim.token)

Queries (Prometheus API; Grafana's Prometheus data source works too):
  curl -H "Authorization: Bearer \$AIOPS" '$API/api/v1/query' --data-urlencode 'query=job:http_server_request_error:ratio_rate5m'
  curl -H "Authorization: Bearer \$AIOPS" '$API/api/v1/query' --data-urlencode 'query=job:http_server_request_duration_seconds:p95_5m'
  curl -H "Authorization: Bearer \$AIOPS" '$API/api/v1/query' --data-urlencode 'query=workflow_queue_latency_seconds'
Alerts and incidents:
  curl -H "Authorization: Bearer \$AIOPS" $API/api/v1/alerts
  curl -H "Authorization: Bearer \$AIOPS" $API/api/v1/incidents
The simulator's side (state, injected faults, ground-truth timeline):
  curl -H "Authorization: Bearer \$SIM" $SIM/state
  curl -H "Authorization: Bearer \$SIM" $SIM/chaos
  curl -H "Authorization: Bearer \$SIM" $SIM/timeline
Break it yourself, or fix it:
  curl -H "Authorization: Bearer \$SIM" -X POST $SIM/chaos -d '{"fault": "redis_down", "duration": "5m"}'
  curl -H "Authorization: Bearer \$SIM" -X POST $SIM/breakers/redis-cache/trip
Logs: $DATA/aiops.log, $DATA/workflow-sim.log. API: $SIM/openapi.yaml, docs/SIMULATOR.md.
MSG

wait -n "${pids[@]}"
echo "a process stopped; see the logs in $DATA" >&2
