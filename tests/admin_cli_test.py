#!/usr/bin/env python3
"""`eventbus topics` and `eventbus groups` against the sidecar binary and the
real Kafka, checked against Kafka itself.

Creates, lists, describes and deletes a topic with the CLI; builds a group
with committed offsets, a partition without one and (later) a live member,
and checks that `eventbus groups describe` shows the same committed offsets,
log-end offsets, lag and members as Kafka's own kafka-consumer-groups.sh
(ConsumerGroupCommand, from the Kafka jars the project already fetches);
resets the group with a dry run (nothing moves in Kafka) and for real (a
new subscriber starts there), and is refused while the group has a member.

Usage: admin_cli_test.py SIDECAR CLI KAFKA_LIB_DIR
Needs TEST_KAFKA_BROKERS and GRPCURL (deploy/test.sh sets both), and java
(JAVA_HOME or PATH), as deploy/kafka/kafka.sh does.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


class Cli:
    def __init__(self, binary, address):
        self.binary, self.address = binary, address

    def run(self, *args, want=0):
        cmd = [self.binary, *args[:2], "--address", self.address, *args[2:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if want is not None and r.returncode != want:
            fail(f"{' '.join(cmd)}: exit {r.returncode}, want {want}\n"
                 f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        print(f"$ eventbus {' '.join(args)}\n{r.stdout}{r.stderr}", end="")
        return r

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)


def table(text, header_start):
    """The rows (as lists of cells) of the table whose header line starts
    with `header_start`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            # Every cell is one word ("-" when empty): the table ends at the
            # first line with another number of cells, or at the summary
            # line under it.
            columns = len(line.split())
            rows = []
            for row in lines[i + 1:]:
                if len(row.split()) != columns or row.startswith(
                        ("Total lag:", "dry run:", "committed new offsets")):
                    break
                rows.append(row.split())
            return rows
    fail(f"no table starting with {header_start!r} in:\n{text}")


def kafka_describe(java, kafka_lib, brokers, group):
    """kafka-consumer-groups.sh --describe --group: {(topic, partition):
    (current, log_end, lag, consumer_id)}, '-' kept as is."""
    r = subprocess.run([java, "-cp", os.path.join(kafka_lib, "*"),
                        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                        "--bootstrap-server", brokers, "--describe", "--group", group],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"kafka-consumer-groups.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    out = {}
    for line in r.stdout.splitlines():
        cells = line.split()
        if len(cells) >= 7 and cells[0] == group:
            out[(cells[1], int(cells[2]))] = (cells[3], cells[4], cells[5], cells[6])
    return out, r.stdout


def ours(cli, group):
    """`eventbus groups describe`, table and JSON, in the same shape."""
    text = cli.run("groups", "describe", group).stdout
    rows = {}
    for cells in table(text, "TOPIC"):
        topic, partition, committed, end, lag, member = cells[:6]
        rows[(topic, int(partition))] = (committed, end, lag, member)
    total = re.search(r"^Total lag: (\d+)$", text, re.M)
    if not total:
        fail(f"no 'Total lag: N' line in:\n{text}")
    j = cli.json("groups", "describe", group)
    for o in j["offsets"]:
        key = (o["topic"], o["partition"])
        committed = "-" if int(o["committed_offset"]) < 0 else o["committed_offset"]
        lag = "-" if int(o["lag"]) < 0 else o["lag"]
        member = o["member_id"] or "-"
        if rows.get(key) != (committed, o["high_watermark"], lag, member):
            fail(f"table row {key} {rows.get(key)} differs from the JSON {o}")
    if int(j["total_lag"]) != int(total.group(1)):
        fail(f"JSON total_lag {j['total_lag']} differs from the table's {total.group(1)}")
    return rows, int(total.group(1)), j


def compare_with_kafka(cli, java, kafka_lib, brokers, group):
    rows, total, j = ours(cli, group)
    theirs, raw = wait_for("kafka-consumer-groups.sh to describe the group",
                           lambda: (lambda t: t if t[0] else None)(
                               kafka_describe(java, kafka_lib, brokers, group)))
    print(f"kafka-consumer-groups.sh --describe --group {group}:\n{raw}")
    if set(rows) != set(theirs):
        fail(f"partitions differ: eventbus {sorted(rows)}, Kafka {sorted(theirs)}")
    kafka_total = 0
    for key, (current, end, lag, consumer) in theirs.items():
        mine = rows[key]
        if mine[:3] != (current, end, lag):
            fail(f"{key}: eventbus shows committed/end/lag {mine[:3]}, "
                 f"kafka-consumer-groups.sh {(current, end, lag)}")
        if mine[3] != consumer:
            fail(f"{key}: eventbus shows member {mine[3]}, Kafka {consumer}")
        if lag != "-":
            kafka_total += int(lag)
    if total != kafka_total:
        fail(f"total lag {total}, Kafka's lags sum to {kafka_total}")
    return rows, j


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    sidecar_bin, cli_bin, kafka_lib = sys.argv[1:]
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "")
    if not brokers:
        fail("TEST_KAFKA_BROKERS is not set (deploy/test.sh sets it)")
    grpcurl = os.environ.get("GRPCURL", "")
    if not os.access(grpcurl, os.X_OK):
        fail(f"GRPCURL={grpcurl!r} is not an executable grpcurl (deploy/install-deps.sh installs it)")
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    if not java:
        fail("no java (JAVA_HOME or PATH): needed for Kafka's kafka-consumer-groups.sh")
    if not os.path.isdir(kafka_lib):
        fail(f"{kafka_lib} is missing (deploy/kafka/kafka.sh fetch)")

    work = tempfile.mkdtemp(prefix="eventbus-admin-cli-")
    procs = []
    ok = False
    try:
        log = open(os.path.join(work, "sidecar.log"), "w")
        # Auto-creation off, as docs/operations.md advises where deletes must
        # stick: this sidecar publishes to the topic before deleting it, and
        # librdkafka's producer keeps asking for the metadata of a topic it
        # knows, which a broker with auto.create.topics.enable re-creates
        # (seen: an empty topic with a new id, within a second).
        sidecar = subprocess.Popen(
            [sidecar_bin, f"--kafka.brokers={brokers}", "--server.listen=127.0.0.1:0",
             "--server.metrics_listen=", "--admin.allow_changes=true",
             "--kafka.producer.allow.auto.create.topics=false"],
            stdout=log, stderr=subprocess.STDOUT)
        procs.append(sidecar)

        def started():
            text = open(log.name, encoding="utf-8", errors="replace").read()
            if sidecar.poll() is not None:
                fail("the sidecar exited:\n" + text)
            m = re.search(r"serving on (127\.0\.0\.1:\d+)", text)
            return m and "health: SERVING" in text and m.group(1)
        address = wait_for("the sidecar to serve", started)
        cli = Cli(cli_bin, address)

        # --- topics ----------------------------------------------------------
        topic = f"admin-cli-{uuid.uuid4().hex[:8]}"
        r = cli.run("topics", "create", topic, "--partitions", "3",
                    "--config", "retention.ms=3600000")
        if r.stdout.strip() != f"created topic {topic}":
            fail(f"create printed {r.stdout!r}")
        r = cli.run("topics", "create", topic, "--partitions", "3", want=1)
        if "ALREADY_EXISTS" not in r.stderr:
            fail(f"creating it again: {r.stderr!r}, want ALREADY_EXISTS")

        listed = {row[0]: row for row in table(cli.run("topics", "list").stdout, "TOPIC")}
        if listed.get(topic) != [topic, "3", "1"]:
            fail(f"topics list shows {listed.get(topic)} for {topic}, want 3 partitions, 1 replica")
        if "__consumer_offsets" in listed:
            fail("topics list shows internal topics without --internal")
        if not any(t["name"] == topic for t in cli.json("topics", "list")["topics"]):
            fail("topics list --json does not list the topic")

        # Events on every partition: three keys.
        for key in ("a", "b", "c", "d", "e"):
            subprocess.run([cli_bin, "publish", "--address", address, "--topic", topic,
                            "--type", "com.example.admin", "--key", key, "--data", "x",
                            "--count", "6"], check=True, capture_output=True, timeout=120)

        text = cli.run("topics", "describe", topic).stdout
        if not text.startswith(f"Topic: {topic}  id: ") or "partitions: 3" not in text.splitlines()[0]:
            fail(f"topics describe header: {text.splitlines()[0]!r}")
        partitions = table(text, "PARTITION")
        described = cli.json("topics", "describe", topic)
        ends = {p["partition"]: int(p["high_watermark"]) for p in described["partitions"]}
        if sum(ends.values()) != 30 or len(partitions) != 3:
            fail(f"the partitions' high watermarks sum to {sum(ends.values())}, want the 30 events")
        for cells in partitions:
            p, leader, replicas, isr, low, high = cells
            if int(high) != ends[int(p)] or low != "0" or replicas != leader or isr != leader:
                fail(f"partition row {cells} (JSON high watermark {ends[int(p)]})")
        configs = {row[0]: row for row in table(text, "CONFIG")}
        if configs.get("retention.ms") != ["retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG"]:
            fail(f"retention.ms row: {configs.get('retention.ms')}")

        # --- groups: committed offsets and lag as Kafka shows them ------------
        group = f"admin-cli-{uuid.uuid4().hex[:8]}"
        # Acks 5 events: one or more partitions get a committed offset; a
        # partition the subscriber got nothing from has none.
        subprocess.run([cli_bin, "subscribe", "--address", address, "--topic", topic,
                        "--group", group, "--from", "earliest", "--count", "5"],
                       check=True, capture_output=True, timeout=120)
        listed = {row[0]: row for row in table(cli.run("groups", "list").stdout, "GROUP")}
        if listed.get(group) != [group, "Empty"]:
            fail(f"groups list shows {listed.get(group)} for {group}, want Empty")
        rows, _ = compare_with_kafka(cli, java, kafka_lib, brokers, group)

        # With a member that holds its deliveries unacked (grpcurl).
        stream = subprocess.Popen([grpcurl, "-plaintext", "-d", "@", address,
                                   "eventbus.v1.EventBus/Subscribe"],
                                  stdin=subprocess.PIPE, stdout=open(os.path.join(work, "grpcurl.out"), "w"),
                                  stderr=subprocess.STDOUT)
        procs.append(stream)
        stream.stdin.write(json.dumps({"subscription": {
            "topics": [topic], "group": group, "max_outstanding_messages": 3}}).encode() + b"\n")
        stream.stdin.flush()
        wait_for("the member to get its partitions",
                 lambda: len(cli.json("groups", "describe", group).get("members", [])) == 1 and
                 all(o["member_id"] for o in cli.json("groups", "describe", group)["offsets"]))
        _, j = compare_with_kafka(cli, java, kafka_lib, brokers, group)
        text = cli.run("groups", "describe", group).stdout
        members = table(text, "MEMBER")
        if len(members) != 1 or members[0][1] != "eventbus-sidecar":
            fail(f"members table: {members}")

        r = cli.run("groups", "reset", group, "--topic", topic, "--to-earliest", want=1)
        if "FAILED_PRECONDITION" not in r.stderr or "member" not in r.stderr:
            fail(f"reset with a member: {r.stderr!r}, want FAILED_PRECONDITION naming the member")
        stream.stdin.close()
        stream.terminate()
        stream.wait(timeout=30)
        wait_for("the member to leave",
                 lambda: not cli.json("groups", "describe", group).get("members"))

        # --- reset ------------------------------------------------------------
        before, _ = kafka_describe(java, kafka_lib, brokers, group)
        r = cli.run("groups", "reset", group, "--topic", topic, "--to-earliest", "--dry-run")
        if "dry run: nothing committed" not in r.stdout:
            fail(f"dry run printed:\n{r.stdout}")
        for cells in table(r.stdout, "TOPIC"):
            if cells[3] != "0":
                fail(f"dry run to earliest: {cells}")
        after, _ = kafka_describe(java, kafka_lib, brokers, group)
        if before != after:
            fail(f"a dry run moved offsets in Kafka: {before} -> {after}")

        # Every partition to its end but one, which goes to offset 2: a new
        # subscriber then starts exactly there.
        target = max(ends, key=lambda p: ends[p])
        cli.run("groups", "reset", group, "--topic", topic, "--to-latest")
        r = cli.run("groups", "reset", group, "--topic", topic, "--partition", str(target),
                    "--to-offset", "2")
        if f"committed new offsets for group {group}" not in r.stdout:
            fail(f"reset printed:\n{r.stdout}")
        after, _ = kafka_describe(java, kafka_lib, brokers, group)
        for (t, p), (current, end, lag, _) in after.items():
            want = 2 if p == target else ends[p]
            if int(current) != want:
                fail(f"Kafka shows {current} committed for partition {p} after the reset, want {want}")
        first = subprocess.run([cli_bin, "subscribe", "--address", address, "--topic", topic,
                                "--group", group, "--count", "1"],
                               capture_output=True, text=True, timeout=120, check=True)
        delivery = json.loads(first.stdout.splitlines()[0])
        if (delivery["partition"], int(delivery["offset"])) != (target, 2):
            fail(f"the next subscriber started at partition {delivery['partition']} offset "
                 f"{delivery['offset']}, want {target} offset 2")

        # --- delete -----------------------------------------------------------
        r = cli.run("topics", "delete", topic)
        if r.stdout.strip() != f"deleted topic {topic}":
            fail(f"delete printed {r.stdout!r}")
        r = cli.run("topics", "describe", topic, want=1)
        if "NOT_FOUND" not in r.stderr:
            fail(f"describe after delete: {r.stderr!r}, want NOT_FOUND")
        # And it stays deleted: librdkafka asks for unknown topics every
        # second, which would re-create it if auto-creation were on.
        time.sleep(2.5)
        r = cli.run("topics", "describe", topic, want=1)
        if "NOT_FOUND" not in r.stderr:
            fail(f"describe 2.5 s after delete: {r.stderr!r}, want NOT_FOUND")
        ok = True
        print("admin CLI: topics and groups match Kafka")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not ok:
            print(open(os.path.join(work, "sidecar.log"), errors="replace").read()[-4000:],
                  file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
