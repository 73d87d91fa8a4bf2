#!/usr/bin/env python3
"""The sidecar's metrics as an operator sees them: scraped by a real Prometheus.

Starts the sidecar against the real Kafka (TEST_KAFKA_BROKERS) and Debian's
prometheus server scraping its /metrics every second, publishes events of
which some fail (larger than limits.max_event_bytes), and checks through
Prometheus's HTTP API that the queries docs/operations.md gives return what
happened. `promtool check metrics` must accept the exposition, and /healthz
and /readyz must answer.

Usage: metrics_prometheus_test.py SIDECAR CLI PROMETHEUS_BIN_DIR REPO
Needs TEST_KAFKA_BROKERS and GRPCURL (deploy/test.sh sets both).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

# The queries docs/operations.md documents, verbatim.
SUCCESS_RATE = ('sum(rate(eventbus_publish_events_total{code="OK"}[5m]))\n'
                '  / sum(rate(eventbus_publish_events_total[5m]))')
PUBLISH_P99 = ('histogram_quantile(0.99,\n'
               '  sum by (le) (rate(eventbus_publish_latency_seconds_bucket[5m])))')
BACKLOG = 'sum by (group, topic) (eventbus_subscribe_lag_records)'
CONSUMER_P99 = ('histogram_quantile(0.99,\n'
                '  sum by (le, group) (rate(eventbus_subscribe_delivery_latency_seconds_bucket[5m])))')
MAX_EVENT_BYTES = 1000


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def query(prom, expr):
    """The instant vector of `expr` as [(labels, value)]."""
    status, body = http_get(f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if status != 200:
        fail(f"Prometheus answered {status} to {expr!r}: {body}")
    data = json.loads(body)["data"]
    return [(r["metric"], float(r["value"][1])) for r in data["result"]]


def scalar(prom, expr):
    result = query(prom, expr)
    if len(result) != 1:
        fail(f"{expr!r} returned {len(result)} series, not 1: {result}")
    return result[0][1]


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    fail(f"timed out waiting for {what}")


def publish(cli, address, topic, data, count):
    # One key: every event in one partition, so the group has a committed
    # offset there before the backlog is measured (the lag of a partition the
    # group never committed is unknown, "-" in kafka-consumer-groups.sh).
    r = subprocess.run([cli, "publish", "--address", address, "--topic", topic, "--type",
                        "com.example.metrics", "--key", "metrics-test", "--data", data,
                        "--count", str(count)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    sidecar_bin, cli, prom_dir, repo = sys.argv[1:]
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "")
    if not brokers:
        fail("TEST_KAFKA_BROKERS is not set (deploy/test.sh sets it)")
    grpcurl = os.environ.get("GRPCURL", "")
    if not os.access(grpcurl, os.X_OK):
        fail(f"GRPCURL={grpcurl!r} is not an executable grpcurl (deploy/install-deps.sh installs it)")
    prometheus = os.path.join(prom_dir, "prometheus")
    promtool = os.path.join(prom_dir, "promtool")
    for tool in (prometheus, promtool):
        if not os.access(tool, os.X_OK):
            fail(f"{tool} is missing (deploy/install-deps.sh unpacks Debian's prometheus package)")
    docs = open(os.path.join(repo, "docs", "operations.md"), encoding="utf-8").read()
    for q in (SUCCESS_RATE, PUBLISH_P99, CONSUMER_P99, BACKLOG):
        if q not in docs:
            fail(f"docs/operations.md no longer documents the query:\n{q}")

    work = tempfile.mkdtemp(prefix="eventbus-prometheus-")
    procs = []
    ok = False
    try:
        log = open(os.path.join(work, "sidecar.log"), "w")
        sidecar = subprocess.Popen(
            [sidecar_bin, f"--kafka.brokers={brokers}", "--server.listen=127.0.0.1:0",
             "--server.metrics_listen=127.0.0.1:0", f"--limits.max_event_bytes={MAX_EVENT_BYTES}",
             # Statistics (broker metrics, lag) every second instead of 5.
             "--kafka.producer.statistics.interval.ms=1000",
             "--kafka.consumer.statistics.interval.ms=1000"],
            stdout=log, stderr=subprocess.STDOUT)
        procs.append(sidecar)

        def started():
            text = open(log.name, encoding="utf-8", errors="replace").read()
            m = re.search(r"serving on (127\.0\.0\.1:\d+).*metrics on http://(127\.0\.0\.1:\d+)/metrics", text)
            if sidecar.poll() is not None:
                fail("the sidecar exited:\n" + text)
            return m and "health: SERVING" in text and (m.group(1), m.group(2))
        address, metrics = wait_for("the sidecar to serve", started)

        # Plain-HTTP probes.
        status, body = http_get(f"http://{metrics}/healthz")
        if status != 200:
            fail(f"/healthz answered {status} {body!r}")
        status, body = http_get(f"http://{metrics}/readyz")
        if status != 200 or body.strip() != "SERVING":
            fail(f"/readyz answered {status} {body!r}, want 200 SERVING")
        status, body = http_get(f"http://{metrics}/nothing")
        if status != 404:
            fail(f"/nothing answered {status}, want 404")

        topic = f"metrics-{uuid.uuid4().hex[:8]}"
        small, big = "x" * 100, "y" * (MAX_EVENT_BYTES * 2)
        # Before Prometheus starts, so that every series exists from its first
        # scrape: one event, which waits about a second while Kafka creates
        # the topic, then 99 more and 100 refused ones. (rate() extrapolates
        # a series whose first sample is 0 differently from the others: a
        # latency bucket holding only that slow event would skew the
        # quantile over so short a history.)
        code, err = publish(cli, address, topic, small, 1)
        if code != 0:
            fail(f"publishing the first event failed:\n{err}")
        # A subscriber that acks every event, live before the rest is
        # published (so that their consumer latency is short, as the first
        # event's is not).
        group = f"metrics-{uuid.uuid4().hex[:8]}"
        sub_out = open(os.path.join(work, "subscriber.out"), "w")
        subscriber = subprocess.Popen(
            [cli, "subscribe", "--address", address, "--topic", topic, "--group", group,
             "--from", "earliest", "--count", "400"], stdout=sub_out, stderr=subprocess.STDOUT)
        procs.append(subscriber)

        def acked(n):
            pattern = (f'eventbus_subscribe_acks_total{{group="{group}",topic="{topic}"}} '
                       f'{n}\n')
            return lambda: pattern in http_get(f"http://{metrics}/metrics")[1]
        wait_for("the subscriber to ack the first event", acked(1))
        code, err = publish(cli, address, topic, small, 99)
        if code != 0:
            fail(f"publishing 100 events failed:\n{err}")
        code, err = publish(cli, address, topic, big, 100)
        if code != 1 or "RESOURCE_EXHAUSTED" not in err:
            fail(f"publishing events over limits.max_event_bytes: exit {code}, want 1 and "
                 f"RESOURCE_EXHAUSTED:\n{err[-2000:]}")

        wait_for("the subscriber to ack 100 events", acked(100))

        prom = f"127.0.0.1:{free_port()}"
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: eventbus\n    static_configs:\n"
                    f"      - targets: ['{metrics}']\n")
        prom_log = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address={prom}"], stdout=prom_log, stderr=subprocess.STDOUT))

        def scrapes():
            """How many times Prometheus scraped the sidecar (0 before it answers)."""
            try:
                r = query(prom, 'count_over_time(up{job="eventbus"}[5m])')
            except (OSError, ValueError):
                return 0
            return r[0][1] if r else 0

        def wait_scrapes(n):
            """Waits for `n` more scrapes, so that Prometheus holds the values of now."""
            target = scrapes() + n
            wait_for(f"Prometheus to scrape the sidecar {n} more times",
                     lambda: scrapes() >= target)
        wait_scrapes(5)
        if scalar(prom, 'up{job="eventbus"}') != 1:
            fail("Prometheus reports the sidecar target down")

        # The traffic measured: 300 acknowledged, 100 refused.
        code, err = publish(cli, address, topic, small, 300)
        if code != 0:
            fail(f"publishing 300 events failed:\n{err}")
        print("measured run:", (err.strip().splitlines() or [""])[-1])
        code, err = publish(cli, address, topic, big, 100)
        if code != 1:
            fail(f"publishing 100 events over the limit: exit {code}, want 1")
        wait_for("Prometheus to see 400 acknowledged events",
                 lambda: query(prom, f'eventbus_publish_events_total{{topic="{topic}",code="OK"}} == 400'))
        wait_for("Prometheus to see 200 refused events",
                 lambda: query(prom, f'eventbus_publish_events_total{{topic="{topic}",'
                                     f'code="RESOURCE_EXHAUSTED"}} == 200'))
        wait_scrapes(2)

        if subscriber.wait(timeout=60) != 0:
            fail("the subscriber did not exit 0 after 400 events:\n" + open(sub_out.name).read()[-2000:])
        wait_for("Prometheus to see 400 acks",
                 lambda: query(prom, f'eventbus_subscribe_acks_total{{group="{group}"}} == 400'))
        wait_scrapes(2)

        rate = scalar(prom, SUCCESS_RATE)
        print(f"success rate {rate:.4f} (want 0.75: 300 acknowledged of 400 in the window)")
        if abs(rate - 0.75) > 0.02:
            fail(f"success rate {rate}, want 0.75")
        for labels, v in query(prom, 'sum by (le) (increase(eventbus_publish_latency_seconds_bucket[5m]))'):
            print(f"  le={labels['le']}: {v:.1f}")
        p99 = scalar(prom, PUBLISH_P99)
        print(f"publish latency p99 {p99 * 1000:.2f} ms")
        if not 0 < p99 < 1:
            fail(f"publish latency p99 {p99} s, want between 0 and 1 s (loopback Kafka)")
        consumer_p99 = query(prom, CONSUMER_P99)
        if len(consumer_p99) != 1 or consumer_p99[0][0].get("group") != group:
            fail(f"the consumer latency query returned {consumer_p99}, want one series for {group}")
        print(f"consumer latency p99 {consumer_p99[0][1] * 1000:.2f} ms (group {group})")
        if not 0 < consumer_p99[0][1] < 1:
            fail(f"consumer latency p99 {consumer_p99[0][1]} s, want between 0 and 1 s")
        for metric, want in (("eventbus_subscribe_deliveries_total", 400),
                             ("eventbus_subscribe_acks_total", 400),
                             ("eventbus_subscribe_ack_latency_seconds_count", 400)):
            got = scalar(prom, f'{metric}{{group="{group}",topic="{topic}"}}')
            if got != want:
                fail(f"{metric} {got}, want {want}")
        if scalar(prom, f'eventbus_subscribe_streams{{group="{group}"}}') != 0:
            fail("eventbus_subscribe_streams is not 0 after the subscriber left")
        acked_bytes = scalar(prom, f'eventbus_publish_bytes_total{{topic="{topic}"}}')
        if acked_bytes < 400 * 100:
            fail(f"eventbus_publish_bytes_total {acked_bytes}, want at least 400 x 100 data bytes")
        count = scalar(prom, f'eventbus_publish_latency_seconds_count{{topic="{topic}"}}')
        if count != 400:
            fail(f"eventbus_publish_latency_seconds_count {count}, want 400 (acknowledged events)")
        handled = scalar(prom, 'sum(eventbus_grpc_handled_total{method="/eventbus.v1.EventBus/PublishStream"})')
        if handled != 5:
            fail(f"eventbus_grpc_handled_total for PublishStream {handled}, want 5 (one per CLI run)")
        for expr in ('eventbus_kafka_connected == 1', 'eventbus_ready == 1',
                     'process_resident_memory_bytes > 1e6', 'process_open_fds > 0',
                     'process_threads > 1', 'process_cpu_seconds_total > 0',
                     'process_start_time_seconds > 1.7e9'):
            if not query(prom, expr):
                fail(f"{expr} returned nothing")
        if not query(prom, 'eventbus_kafka_broker_up == 1'):
            fail("no broker is up in eventbus_kafka_broker_up: "
                 f"{query(prom, 'eventbus_kafka_broker_up')}")

        # The backlog. The subscriber's group committed all 400 events and
        # its stream ended: no lag series. Then 50 more events, and a stream
        # of the same group that takes 10 deliveries and acks none: the
        # group lags 50 events behind, 10 of them outstanding.
        wait_scrapes(2)
        if any(labels.get("group") == group for labels, _ in query(prom, BACKLOG)):
            fail(f"{group} has a lag series with no stream open")
        code, err = publish(cli, address, topic, small, 50)
        if code != 0:
            fail(f"publishing 50 more events failed:\n{err}")
        stream_out = open(os.path.join(work, "grpcurl.out"), "w")
        stream = subprocess.Popen([grpcurl, "-plaintext", "-d", "@", address,
                                   "eventbus.v1.EventBus/Subscribe"],
                                  stdin=subprocess.PIPE, stdout=stream_out, stderr=subprocess.STDOUT)
        procs.append(stream)
        stream.stdin.write(json.dumps({"subscription": {
            "topics": [topic], "group": group, "max_outstanding_messages": 10}}).encode() + b"\n")
        stream.stdin.flush()

        last = []

        def backlog():
            last[:] = query(prom, f'eventbus_subscribe_lag_records{{group="{group}"}}')
            return any(labels.get("group") == group and labels.get("topic") == topic and v == 50
                       for labels, v in query(prom, BACKLOG))
        try:
            wait_for(f"the backlog query to show 50 for {group}", backlog)
        except SystemExit:
            print(f"lag series of {group} last seen: {last}", file=sys.stderr)
            raise
        outstanding = scalar(prom, f'eventbus_subscribe_outstanding_deliveries{{group="{group}"}}')
        if outstanding != 10:
            fail(f"eventbus_subscribe_outstanding_deliveries {outstanding}, want 10")
        print(f"backlog: {group} lags 50 events with 10 outstanding")

        # Every query of the Grafana dashboard, as Grafana would send it.
        dashboard = json.load(open(os.path.join(repo, "deploy", "observability",
                                                "eventbus-dashboard.json")))
        checked = 0
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$group", ".*")
                if not query(prom, expr):
                    fail(f"dashboard panel {panel['title']!r}: {target['expr']!r} returned nothing")
                checked += 1
        print(f"dashboard: all {checked} queries of {len(dashboard['panels'])} panels returned data")
        stream.stdin.close()
        stream.wait(timeout=30)

        print("prometheus: every query returned what happened")

        # promtool's lint of the exposition.
        _, text = http_get(f"http://{metrics}/metrics")
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            fail(f"promtool check metrics (exit {r.returncode}):\n{r.stdout}{r.stderr}")
        print("promtool check metrics: no problems")
        ok = True
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if not ok:
            for name in ("sidecar.log", "prometheus.log"):
                path = os.path.join(work, name)
                if os.path.exists(path):
                    print(f"--- {name} (tail)", file=sys.stderr)
                    print("".join(open(path, errors="replace").readlines()[-30:]), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
