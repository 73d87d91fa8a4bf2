#!/usr/bin/env python3
"""The client examples of every language against one sidecar and the real Kafka.

Each pair runs one language's publisher, then another language's subscriber
in a new consumer group, and checks that the subscriber processed exactly the
events the publisher had acked, equal in every attribute. The examples follow
the seed scenario: a user service emits user.registered events; a notification
consumer processes each once (skipping duplicates by event id) and acks.

Usage: cross_language_test.py SIDECAR_BINARY REPO [PUBLISHER:SUBSCRIBER ...]
Needs TEST_KAFKA_BROKERS, and each language set up (client/<lang>/setup.sh).
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

DEFAULT_PAIRS = ["python:go", "go:python", "node:java", "java:node", "python:java", "node:go"]
# Pairs whose publisher sends a W3C traceparent in the call's metadata: every
# event must arrive with it as its traceparent extension.
TRACED = {"python:go"}
COUNT = 25
COMPARED = ("id", "type", "source", "subject", "data_content_type", "data", "extensions", "key")


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def start_sidecar(binary, brokers, extra=()):
    log = tempfile.NamedTemporaryFile(prefix="sidecar-", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, f"--kafka.brokers={brokers}", "--server.listen=127.0.0.1:0",
                             "--server.metrics_listen=127.0.0.1:0", *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        content = open(log.name, encoding="utf-8", errors="replace").read()
        m = re.search(r"serving on (127\.0\.0\.1:\d+)", content)
        if m and "health: SERVING" in content:
            return proc, log.name, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    fail("the sidecar did not start serving:\n" + open(log.name).read())


def run(repo, lang, role, args, timeout):
    cmd = [os.path.join(repo, "client", lang, "run.sh"), role] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{lang} {role} exited {r.returncode}:\n{r.stderr[-3000:]}")
    events = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line:
            events.append(json.loads(line))
    return events


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def python_over_mtls(binary, repo, brokers):
    """The Python examples through a sidecar that requires client
    certificates (certificates made here with openssl): refused without one,
    served with one."""
    d = tempfile.mkdtemp(prefix="eventbus-mtls-")
    p = lambda name: os.path.join(d, name)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", p("ca.key"), "-out", p("ca.crt"))
    with open(p("san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", p(f"{name}.key"), "-out", p(f"{name}.csr"))
        openssl("x509", "-req", "-in", p(f"{name}.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", p("san.ext"), "-out", p(f"{name}.crt"))
    proc, log, address = start_sidecar(binary, brokers, [
        f"--server.tls.cert_file={p('server.crt')}", f"--server.tls.key_file={p('server.key')}",
        f"--server.tls.client_ca_file={p('ca.crt')}"])
    topic = f"users-mtls-{uuid.uuid4().hex[:8]}"
    tls = ["--tls-ca", p("ca.crt")]
    mtls = tls + ["--tls-cert", p("client.crt"), "--tls-key", p("client.key")]
    try:
        try:
            run(repo, "python", "publisher", ["--address", address, "--topic", topic, "--count", "1"] + tls,
                timeout=300)
            return "FAIL python over mTLS: a publisher without a client certificate was served"
        except RuntimeError as e:
            if "UNAVAILABLE" not in str(e):
                return f"FAIL python over mTLS: without a client certificate: {e}"
        published = run(repo, "python", "publisher",
                        ["--address", address, "--topic", topic, "--count", str(COUNT)] + mtls, timeout=300)
        received = run(repo, "python", "subscriber",
                       ["--address", address, "--topic", topic, "--group", f"mtls-{uuid.uuid4().hex[:8]}",
                        "--count", str(COUNT), "--timeout-seconds", "90"] + mtls, timeout=300)
        if sorted(e["id"] for e in published) != sorted(e["id"] for e in received) or len(received) != COUNT:
            return f"FAIL python over mTLS: published {len(published)}, received {len(received)}, ids differ"
        return f"ok   python over mTLS: refused without a client certificate; {COUNT} events with one"
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        return f"FAIL python over mTLS: {e}\nsidecar log tail:\n" + "".join(open(log).readlines()[-20:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.unlink(log)
        shutil.rmtree(d, ignore_errors=True)


def main():
    if len(sys.argv) < 3:
        fail(__doc__)
    binary, repo = sys.argv[1], sys.argv[2]
    pairs = sys.argv[3:] or DEFAULT_PAIRS
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "")
    if not brokers:
        fail("TEST_KAFKA_BROKERS is not set (deploy/test.sh sets it)")
    proc, log, address = start_sidecar(binary, brokers)
    passed = failed = 0
    try:
        for pair in pairs:
            pub, sub = pair.split(":")
            topic = f"users-{pub}-{sub}-{uuid.uuid4().hex[:8]}"
            run_id = uuid.uuid4().hex[:8]
            traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" if pair in TRACED else ""
            try:
                published = run(repo, pub, "publisher",
                                ["--address", address, "--topic", topic, "--count", str(COUNT),
                                 "--run-id", run_id]
                                + (["--traceparent", traceparent] if traceparent else []),
                                timeout=300)
                received = run(repo, sub, "subscriber",
                               ["--address", address, "--topic", topic, "--group", f"notify-{run_id}",
                                "--count", str(COUNT), "--timeout-seconds", "90"], timeout=300)
                problems = []
                if len(published) != COUNT:
                    problems.append(f"{pub} published {len(published)} of {COUNT}")
                if len(received) != COUNT:
                    problems.append(f"{sub} processed {len(received)} of {COUNT}")
                want = {e["id"]: {k: e.get(k) for k in COMPARED} for e in published}
                if traceparent:
                    for w in want.values():
                        w["extensions"] = {**(w["extensions"] or {}), "traceparent": traceparent}
                got = {e["id"]: {k: e.get(k) for k in COMPARED} for e in received}
                for event_id, w in want.items():
                    g = got.get(event_id)
                    if g != w:
                        problems.append(f"event {event_id}: published {w}, received {g}")
                for e in published:
                    if e.get("type") != "user.registered" or e.get("extensions", {}).get("runid") != run_id:
                        problems.append(f"{pub} published an event off the scenario: {e}")
                        break
                if problems:
                    failed += 1
                    print(f"FAIL {pub} -> {sub}:\n  " + "\n  ".join(problems[:10]))
                else:
                    passed += 1
                    print(f"ok   {pub} -> {sub}: {COUNT} user.registered events arrived equal"
                          + (f", each with the call's traceparent {traceparent}" if traceparent else ""))
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                failed += 1
                print(f"FAIL {pub} -> {sub}: {e}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if failed:
            print("sidecar log tail:\n" + "".join(open(log).readlines()[-20:]))
        os.unlink(log)
    if not sys.argv[3:]:
        line = python_over_mtls(binary, repo, brokers)
        print(line)
        if line.startswith("ok"):
            passed += 1
        else:
            failed += 1
    print(f"cross-language: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
