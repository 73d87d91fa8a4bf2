#!/usr/bin/env python3
"""The container image, built from deploy/container/Dockerfile and run with
podman against the real Kafka.

Builds the image's `prebuilt` target from the host's build
(deploy/container/build-image.sh --prebuilt: the same Dockerfile and
deploy/container/rootfs.sh as the plain multi-stage build, without compiling
again), checks its settings (user 65532, entrypoint, stop signal, ports, OCI
labels), its contents (the two binaries, CA certificates, no shell) and its
size, then runs it as Kubernetes' restricted profile would (read-only root
filesystem, no capabilities, no new privileges) with --network host and the
brokers from EVENTBUS_KAFKA_BROKERS (by host name, through the image's
/etc/nsswitch.conf). Through it: grpc health SERVING, a Publish from the
host's CLI and one from the CLI inside the image (podman exec), a Subscribe
that receives both; the process is not root. Then `podman stop` (SIGTERM)
while a Subscribe stream is open: the sidecar drains, ends the stream with
UNAVAILABLE and the container exits 0 well before podman's stop timeout.
The container is removed at the end; the image is kept.

Usage: container_test.py SIDECAR CLI REPO
Needs TEST_KAFKA_BROKERS (deploy/test.sh sets it), podman and the
Dockerfile's base image (deploy/install-deps.sh installs podman and makes
it); GRPCURL (deploy/test.sh sets it) for the health check, else /readyz.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

# podman stop's timeout (SIGKILL after it) and the sidecar's drain limit.
STOP_TIMEOUT_S = 30
SHUTDOWN_GRACE_S = 10
MAX_IMAGE_MB = 60
INSTALL_HINT = ("run deploy/install-deps.sh (as root: it installs podman, runc and debootstrap, "
                "writes /etc/containers/containers.conf and makes the Dockerfile's base image)")


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd, timeout=120, want=0, **kwargs):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if want is not None and r.returncode != want:
        fail(f"{' '.join(cmd)}: exit {r.returncode}, want {want}\n"
             f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    return r


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    sidecar_bin, cli, repo = sys.argv[1:]
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "")
    if not brokers:
        fail("TEST_KAFKA_BROKERS is not set (deploy/test.sh sets it)")
    grpcurl = os.environ.get("GRPCURL", "")
    podman = shutil.which("podman")
    if not podman:
        fail(f"podman not found: {INSTALL_HINT}")
    info = run([podman, "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}"], want=None)
    if info.returncode != 0:
        fail(f"podman info failed ({info.stderr.strip()}): {INSTALL_HINT}")
    dockerfile = open(os.path.join(repo, "deploy", "container", "Dockerfile"), encoding="utf-8").read()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.M)
    if not base:
        fail("deploy/container/Dockerfile has no 'ARG BASE_IMAGE=' line")
    if run([podman, "image", "exists", base.group(1)], want=None).returncode != 0:
        fail(f"the Dockerfile's base image {base.group(1)} is missing (its plain build needs it): {INSTALL_HINT}")
    version = re.search(r"^project\(eventbus VERSION ([0-9.]+)",
                        open(os.path.join(repo, "CMakeLists.txt"), encoding="utf-8").read(), re.M).group(1)
    image = f"eventbus/eventbus-sidecar:{version}"
    print(f"podman: runtime and cgroup manager {info.stdout.strip()}; base image {base.group(1)}")

    # ------------------------------------------------------------ the image
    started = time.time()
    env = dict(os.environ, EVENTBUS_SIDECAR_BINARY=sidecar_bin, EVENTBUS_CLI_BINARY=cli,
               CONTAINER_ENGINE="podman")
    run([os.path.join(repo, "deploy", "container", "build-image.sh"), "--prebuilt", "--pull=never"],
        timeout=300, env=env)
    build_s = time.time() - started
    inspect = json.loads(run([podman, "image", "inspect", image]).stdout)[0]
    config, size = inspect["Config"], inspect["Size"]
    print(f"image {image}: {size / 1e6:.1f} MB, built (--target prebuilt) in {build_s:.1f} s")
    want_config = {"User": "65532:65532", "Entrypoint": ["/usr/local/bin/eventbus-sidecar"],
                   "StopSignal": "SIGTERM"}
    for key, want in want_config.items():
        if config.get(key) != want:
            fail(f"image config {key} is {config.get(key)!r}, want {want!r}")
    if sorted(config.get("ExposedPorts", {})) != ["50051/tcp", "9464/tcp"]:
        fail(f"image exposes {sorted(config.get('ExposedPorts', {}))}, want 50051/tcp and 9464/tcp")
    labels = config.get("Labels") or {}
    for key in ("title", "description", "version", "revision"):
        if not labels.get(f"org.opencontainers.image.{key}"):
            fail(f"image label org.opencontainers.image.{key} is missing: {labels}")
    if labels["org.opencontainers.image.version"] != version:
        fail(f"image label version {labels['org.opencontainers.image.version']}, want {version}")
    if size > MAX_IMAGE_MB * 1e6:
        fail(f"the image is {size / 1e6:.1f} MB, more than {MAX_IMAGE_MB} MB")
    root = run([podman, "image", "mount", image]).stdout.strip()
    try:
        for path in ("usr/local/bin/eventbus-sidecar", "usr/local/bin/eventbus",
                     "etc/ssl/certs/ca-certificates.crt", "etc/passwd"):
            if not os.path.isfile(os.path.join(root, path)) or os.path.getsize(os.path.join(root, path)) == 0:
                fail(f"the image has no /{path}")
        for path in ("bin/sh", "usr/bin/apt-get"):
            if os.path.lexists(os.path.join(root, path)):
                fail(f"the image has /{path}: the runtime stage should hold the binaries and their libraries only")
        if "nonroot:x:65532:65532:" not in open(os.path.join(root, "etc/passwd")).read():
            fail("the image's /etc/passwd has no user 65532")
        # No debug sections (deploy/container/rootfs.sh strips them): they
        # would double the image.
        for folder, _, files in os.walk(root):
            for f in files:
                path = os.path.join(folder, f)
                with open(path, "rb") as elf:
                    if elf.read(4) != b"\x7fELF":
                        continue
                if " .debug_" in run(["readelf", "-S", "-W", path]).stdout:
                    fail(f"/{os.path.relpath(path, root)} in the image has debug sections")
    finally:
        run([podman, "image", "unmount", image], want=None)

    # ------------------------------------------------------------ running it
    name = f"eventbus-container-test-{uuid.uuid4().hex[:8]}"
    # By host name: the image resolves it (/etc/hosts, then DNS).
    by_name = re.sub(r"\b127\.0\.0\.1:", "localhost:", brokers)
    subscriber = None
    ok = False
    try:
        run([podman, "run", "--detach", "--name", name, "--network", "host",
             "--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL",
             "--security-opt=no-new-privileges", "--env", f"EVENTBUS_KAFKA_BROKERS={by_name}",
             image, "--server.listen=127.0.0.1:0", "--server.metrics_listen=127.0.0.1:0",
             f"--server.shutdown_grace={SHUTDOWN_GRACE_S}s"])

        def logs():
            r = run([podman, "logs", name], want=None)
            return r.stdout + r.stderr

        def serving():
            text = logs()
            m = re.search(r"serving on (127\.0\.0\.1:\d+).*metrics on http://(127\.0\.0\.1:\d+)/metrics", text)
            state = run([podman, "inspect", "--format", "{{.State.Running}}", name], want=None).stdout.strip()
            if state != "true":
                fail(f"the container is not running (ExitCode "
                     f"{run([podman, 'inspect', '--format', '{{.State.ExitCode}}', name], want=None).stdout.strip()}):"
                     f"\n{text}")
            return m and "health: SERVING" in text and (m.group(1), m.group(2))
        address, metrics = wait_for("the sidecar in the container to serve", serving)
        print(f"container {name}: serving on {address}, metrics on {metrics}, Kafka {by_name}")

        # Health, over gRPC and plain HTTP.
        if grpcurl and os.access(grpcurl, os.X_OK):
            r = run([grpcurl, "-plaintext", address, "grpc.health.v1.Health/Check"])
            if '"SERVING"' not in r.stdout:
                fail(f"grpc health check answered:\n{r.stdout}")
            print("grpc.health.v1.Health/Check: SERVING")
        status, body = http_get(f"http://{metrics}/readyz")
        if status != 200 or body.strip() != "SERVING":
            fail(f"/readyz answered {status} {body!r}, want 200 SERVING")

        # Not root: the process as podman and the host see it.
        top = run([podman, "top", name, "user", "huser", "group", "hgroup"]).stdout.split("\n")
        if top[1].split() != ["nonroot", "65532", "nonroot", "65532"]:
            fail(f"podman top shows the process as:\n{top[0]}\n{top[1]}")
        pid = run([podman, "inspect", "--format", "{{.State.Pid}}", name]).stdout.strip()
        status_lines = open(f"/proc/{pid}/status").read().splitlines()
        for line in status_lines:
            if line.startswith(("Uid:", "Gid:")) and set(line.split()[1:]) != {"65532"}:
                fail(f"the sidecar (pid {pid} on the host) runs as {line}")
        print(f"process: user 65532 (nonroot) in the container and on the host (pid {pid})")

        # Publish from the host and from the CLI in the image; one Subscribe gets both.
        topic = f"container-{uuid.uuid4().hex[:8]}"
        run([cli, "publish", "--address", address, "--topic", topic, "--type", "com.example.container",
             "--data", "from-host"])
        run([podman, "exec", name, "/usr/local/bin/eventbus", "publish", "--address", address,
             "--topic", topic, "--type", "com.example.container", "--data", "from-image"])
        r = run([cli, "subscribe", "--address", address, "--topic", topic, "--group", f"{topic}-a",
                 "--from", "earliest", "--count", "2"], timeout=60)
        got = sorted(json.loads(line)["event"]["data"] for line in r.stdout.splitlines())
        if got != ["from-host", "from-image"]:
            fail(f"the subscriber received {got}, want from-host and from-image")
        print("publish (host CLI and the image's CLI) and subscribe: both events delivered")

        # SIGTERM with a Subscribe stream open.
        out = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{name}-subscriber.out"), "w+")
        subscriber = subprocess.Popen(
            [cli, "subscribe", "--address", address, "--topic", topic, "--group", f"{topic}-b",
             "--from", "earliest", "--count", "1000"], stdout=out, stderr=subprocess.STDOUT, text=True)
        wait_for("the second subscriber to receive both events",
                 lambda: open(out.name).read().count('"delivery_id"') == 2, timeout=60)
        started = time.time()
        run([podman, "stop", "--time", str(STOP_TIMEOUT_S), name], timeout=STOP_TIMEOUT_S + 30)
        stop_s = time.time() - started
        state = json.loads(run([podman, "inspect", name]).stdout)[0]["State"]
        text = logs()
        if state["ExitCode"] != 0:
            fail(f"the container exited {state['ExitCode']} after podman stop, want 0:\n{text[-3000:]}")
        if stop_s >= SHUTDOWN_GRACE_S + 5:
            fail(f"podman stop took {stop_s:.1f} s: more than the {SHUTDOWN_GRACE_S} s grace")
        for want in ("received Terminated, shutting down", "shut down: every accepted event was delivered"):
            if want not in text:
                fail(f"the sidecar's log has no {want!r}:\n{text[-3000:]}")
        try:
            code = subscriber.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("the open Subscribe stream did not end when the sidecar stopped")
        said = open(out.name).read()
        if code == 0 or "shutting down" not in said:
            fail(f"the open Subscribe stream ended with exit {code}, want an error naming the shutdown:\n{said[-2000:]}")
        print(f"podman stop: exit 0 after {stop_s:.1f} s (stop timeout {STOP_TIMEOUT_S} s, "
              f"grace {SHUTDOWN_GRACE_S} s); the open stream ended with UNAVAILABLE")
        print(f"container test passed; image {image} {size / 1e6:.1f} MB")
        ok = True
    finally:
        if subscriber and subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
        if not ok:
            r = run([podman, "logs", name], want=None)
            print(f"--- container log (tail)\n{(r.stdout + r.stderr)[-3000:]}", file=sys.stderr)
        run([podman, "rm", "--force", "--time", "0", name], want=None)
        if subscriber:
            os.unlink(out.name)


if __name__ == "__main__":
    main()
