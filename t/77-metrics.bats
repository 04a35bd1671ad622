#!/usr/bin/env bats
# --metrics-listen: the Prometheus text format, checked by promtool and
# against what the clients sent; strict HTTP; ended experiments leave the
# exposition; and a real Prometheus (the Debian package, run by the test
# on a port of its own, never the system's service) scraping the server
# and computing the rate the test sent rows at.

load helpers

# The metrics address the server's log names: into $MADDR.
metrics_addr() {
	MADDR=$(sed -n 's|.* metrics on http://\(.*\)/metrics$|\1|p' "$LOG" | head -n 1)
	[ -n "$MADDR" ]
}

scrape() {
	curl -sS --max-time 5 "http://$MADDR/metrics"
}

# The value of one series: metric NAME{LABELS}
metric() {
	scrape | awk -v s="$1" '$1 == s { print $2 }'
}

metric_is() {
	[ "$(metric "$1")" = "$2" ]
}

wait_metric() {
	wait_for "${3:-10}" metric_is "$1" "$2" || {
		echo "$1: wanted $2, got '$(metric "$1")'" >&2
		return 1
	}
}

# A Prometheus query's first value: promq EXPR
promq() {
	curl -sS --max-time 5 -G "http://127.0.0.1:$PPORT/api/v1/query" \
	    --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

# Is the query's value between LOW and HIGH?  promq_between EXPR LOW HIGH
promq_between() {
	local v
	v=$(promq "$1")
	[ -n "$v" ] && awk -v v="$v" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'
}

@test "the metrics endpoint is off unless --metrics-listen is given" {
	start_server
	log_lacks ' metrics on '
	run metrics_addr
	[ "$status" -ne 0 ]
}

@test "GET /metrics serves each experiment's rows, bytes, clients and commits in a format promtool accepts" {
	local bytes
	start_server --metrics-listen=127.0.0.1:0
	metrics_addr
	"$OMLSEND" -q -e prom -S s1 -T 1700000000 -n 300 "file:$T/s1.oml"
	bytes=$(stat -c %s "$T/s1.oml")
	bg "$OMLSEND" -q -e prom -S s1 -T 1700000000 -n 300 -H 60000 "127.0.0.1:$PORT"
	send -e prom -S s2 -n 200 -G 7
	wait_rows prom gen 499
	wait_metric 'oml2_experiment_rows_stored_total{experiment="prom"}' 499
	wait_metric 'oml2_experiment_clients{experiment="prom"}' 1
	metric_is 'oml2_experiment_up{experiment="prom"}' 1
	metric_is 'oml2_experiment_rows_dropped_total{experiment="prom"}' 0
	metric_is 'oml2_experiment_sequence_gaps_total{experiment="prom"}' 1
	metric_is 'oml2_experiment_sequence_missing_total{experiment="prom"}' 1
	metric_is 'oml2_experiment_clients_connected_total{experiment="prom"}' 2
	metric_is 'oml2_experiment_stalled{experiment="prom"}' 0
	# bytes: the held client's file, and the other's
	[ "$(metric 'oml2_experiment_received_bytes_total{experiment="prom"}')" -gt "$bytes" ]
	metric_is 'oml2_connections_accepted_total' 2
	metric_is 'oml2_processes{state="serving"}' 1
	metric_is 'oml2_experiments' 1
	metric_is 'oml2_connections_pending' 0
	# a commit histogram whose +Inf bucket is its count
	[ "$(metric 'oml2_experiment_commit_duration_seconds_count{experiment="prom"}')" -ge 1 ]
	[ "$(metric 'oml2_experiment_commit_duration_seconds_bucket{experiment="prom",le="+Inf"}')" = \
	    "$(metric 'oml2_experiment_commit_duration_seconds_count{experiment="prom"}')" ]
	[ "$(metric 'oml2_resident_memory_bytes{process="master"}')" -gt 100000 ]
	scrape >"$T/metrics.txt"
	promtool check metrics <"$T/metrics.txt"
	# A refused connection is counted by reason.
	raw_refused 'protocol: 5\ndomain: ../bad\n\n'
	wait_metric 'oml2_connections_refused_total{reason="bad_header"}' 1
}

@test "anything but GET /metrics gets 400, 404, 405 or 431 and a log line, and a silent scraper is cut off" {
	start_server --metrics-listen=127.0.0.1:0 --header-timeout=1
	metrics_addr
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MADDR/")" = 404 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$MADDR/metrics")" = 405 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Long: $(head -c 9000 /dev/zero | tr '\0' a)" "http://$MADDR/metrics")" = 431 ]
	[ "$(printf 'GARBAGE\r\n\r\n' | curl -s --max-time 5 telnet://"$MADDR" 2>/dev/null | head -n 1 | tr -d '\r')" = "HTTP/1.1 400 Bad Request" ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MADDR/metrics?x=1")" = 200 ]
	log_has "metrics: 127.0.0.1 port [0-9]+: a path other than /metrics; answered 404 Not Found"
	log_has "metrics: 127.0.0.1 port [0-9]+: a method other than GET; answered 405 Method Not Allowed"
	log_has "metrics: 127.0.0.1 port [0-9]+: a request longer than 8 KiB; answered 431"
	log_has "metrics: 127.0.0.1 port [0-9]+: not an HTTP request; answered 400 Bad Request"
	# connects, says nothing
	bg perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die; sleep 30' "$MADDR"
	wait_log "metrics: 127.0.0.1 port [0-9]+: sent no request in 1 s; connection closed" 10
	# and the server goes on
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MADDR/metrics")" = 200 ]
}

@test "an ended experiment leaves the metrics --keep-ended seconds after its process ended" {
	start_server --metrics-listen=127.0.0.1:0 --linger=0 --keep-ended=2
	metrics_addr
	send -e brief -n 10
	wait_log 'experiment brief process [0-9]+ exited'
	wait_metric 'oml2_experiment_up{experiment="brief"}' 0
	metric_is 'oml2_experiment_rows_stored_total{experiment="brief"}' 10
	wait_for 10 eval '! scrape | grep -q "experiment=\"brief\""'
	# the server's own total keeps its rows
	metric_is 'oml2_rows_stored_total' 10
}

@test "a real Prometheus scraping the server computes the rate at which the test sent rows" {
	local dir=$T/prometheus ppid
	start_server --metrics-listen=127.0.0.1:0
	metrics_addr
	PPORT=$(free_port)
	mkdir -p "$dir/data"
	cat >"$dir/prometheus.yml" <<-EOF
	global:
	  scrape_interval: 1s
	  scrape_timeout: 1s
	  evaluation_interval: 1s
	scrape_configs:
	  - job_name: oml2
	    static_configs:
	      - targets: ['$MADDR']
	EOF
	bg prometheus --config.file="$dir/prometheus.yml" \
	    --storage.tsdb.path="$dir/data" \
	    --web.listen-address="127.0.0.1:$PPORT" --log.level=warn \
	    >"$dir/log" 2>&1
	ppid=$BG
	wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$PPORT/-/ready" ||
	    { cat "$dir/log" >&2; return 1; }
	wait_for 10 eval '[ "$(promq "up{job=\"oml2\"}")" = 1 ]'
	# 1000 rows a second for 5 s: bursts of 100 every 100 ms.
	bg "$OMLSEND" -q -e rated -n 5000 -B 100 -p 100 "127.0.0.1:$PORT"
	wait_for 15 promq_between 'rate(oml2_experiment_rows_stored_total{experiment="rated"}[4s])' 800 1200 || {
		echo "rate: $(promq 'rate(oml2_experiment_rows_stored_total{experiment="rated"}[4s])')" >&2
		return 1
	}
	echo "# Prometheus: rate() $(promq 'rate(oml2_experiment_rows_stored_total{experiment="rated"}[4s])') rows/s for 1000 sent a second" >&3
	wait_rows rated gen 5000 20
	wait_for 10 eval '[ "$(promq "oml2_experiment_rows_stored_total{experiment=\"rated\"}")" = 5000 ]'
	kill -TERM "$ppid"
	wait_gone "$ppid" 10
}
