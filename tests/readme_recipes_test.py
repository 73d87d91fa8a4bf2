#!/usr/bin/env python3
"""Runs the grpcurl recipes of README.md against a real sidecar and Kafka.

The recipes are the shell commands between the markers
<!-- grpcurl-recipes:start --> and <!-- grpcurl-recipes:end -->. Each must exit
0, unless a comment line "# expect-failure: TEXT" precedes it: then it must
fail and print TEXT; after "# expect-output: TEXT" it must succeed and print
TEXT. "localhost:50051" is replaced by the test sidecar's
address. Needs GRPCURL (the grpcurl binary) and TEST_KAFKA_BROKERS.

Usage: readme_recipes_test.py SIDECAR_BINARY README
"""
import os
import re
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def recipes(readme):
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"<!-- grpcurl-recipes:start -->\n```sh\n(.*?)```\n<!-- grpcurl-recipes:end -->",
                  text, re.S)
    if not m:
        fail("no grpcurl recipes block in README.md")
    out, cmd, expect = [], [], None
    for line in m.group(1).splitlines():
        if not cmd:
            if line.startswith("# expect-failure:") or line.startswith("# expect-output:"):
                kind, text = line[2:].split(":", 1)
                expect = (kind, text.strip())
                continue
            if not line.strip() or line.startswith("#"):
                continue
        cmd.append(line)
        joined = "\n".join(cmd)
        complete = (joined.count("'") % 2 == 0 and joined.count("(") == joined.count(")")
                    and not joined.rstrip().endswith(("\\", "|")))
        if complete:
            out.append((joined, expect))
            cmd, expect = [], None
    if cmd:
        fail("unterminated recipe: " + "\n".join(cmd))
    return out


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    sidecar, readme = sys.argv[1], sys.argv[2]
    grpcurl = os.environ.get("GRPCURL", "")
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "")
    if not grpcurl or not os.access(grpcurl, os.X_OK):
        fail(f"GRPCURL={grpcurl!r} is not an executable grpcurl (deploy/install-deps.sh installs it)")
    if not brokers:
        fail("TEST_KAFKA_BROKERS is not set (deploy/test.sh sets it)")
    todo = recipes(readme)
    if len(todo) < 5:
        fail(f"only {len(todo)} recipes found")

    log = tempfile.NamedTemporaryFile(prefix="sidecar-", suffix=".log", delete=False)
    proc = subprocess.Popen([sidecar, f"--kafka.brokers={brokers}", "--server.listen=127.0.0.1:0",
                             "--server.metrics_listen=127.0.0.1:0"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        address = None
        for _ in range(300):
            content = open(log.name, encoding="utf-8", errors="replace").read()
            m = re.search(r"serving on (127\.0\.0\.1:\d+)", content)
            if m and "health: SERVING" in content:
                address = m.group(1)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if address is None:
            fail("the sidecar did not start serving:\n" + open(log.name).read())
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(os.path.abspath(grpcurl)) + os.pathsep + env["PATH"]
        passed = failed = 0
        for cmd, expect in todo:
            run = cmd.replace("localhost:50051", address)
            r = subprocess.run(["bash", "-c", run], env=env, capture_output=True, text=True, timeout=60)
            output = r.stdout + r.stderr
            if expect and expect[0] == "expect-failure":
                ok = r.returncode != 0 and expect[1] in output
            else:
                ok = r.returncode == 0 and (not expect or expect[1] in output)
            first = cmd.splitlines()[0]
            if ok:
                passed += 1
                print(f"ok   {first}")
            else:
                failed += 1
                print(f"FAIL {first}\n  exit {r.returncode}, expected "
                      f"{expect or 'success'}\n{output}")
        if "eventbus.v1.EventBus" not in subprocess.run(
                ["bash", "-c", f"grpcurl -plaintext {address} list"], env=env,
                capture_output=True, text=True).stdout:
            failed += 1
            print("FAIL reflection does not list eventbus.v1.EventBus")
        print(f"readme recipes: {passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(log.name)


if __name__ == "__main__":
    sys.exit(main())
