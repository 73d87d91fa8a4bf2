#!/usr/bin/env python3
"""The Kubernetes manifests of deploy/kubernetes/, checked offline.

Renders the base, the example overlay and the example with the TLS component
with `kubectl kustomize` (or, where there is no kubectl, the kustomize that
deploy/install-deps.sh builds into build/tools/bin), then:

  * validates every object against the Kubernetes OpenAPI schemas that the
    PyPI package kubernetes-validate bundles, in strict mode (unknown fields
    are errors), for Kubernetes 1.29 (the first with native sidecars on by
    default) and for the newest version it knows. The PodMonitor is a custom
    resource (monitoring.coreos.com/v1) it has no schema for: the test checks
    it itself (check `podmonitor`); any other kind without a schema fails.
  * checks what no schema can say: the sidecar is a native sidecar
    (initContainers, restartPolicy Always), its probes hit its own plaintext
    ports and the right health (liveness: the gRPC health service "liveness"
    or HTTP /healthz, which stay SERVING while Kafka is away; startup and
    readiness: the default service or /readyz, which follow Kafka), the pod's grace period outlasts server.shutdown_grace, the
    application's EVENTBUS_ADDRESS names the sidecar's socket in a volume both
    mount and may connect to, the security context, resources, where config
    and credentials come from, the Prometheus annotations and PodMonitor, and
    that the NetworkPolicy keeps other pods off the plaintext gRPC port.

Then it shows that every check bites: for each check, copies of the manifests
broken on purpose (in a temporary directory) must make it fail.

Usage: kubernetes_manifests_test.py REPO TOOLS_DIR
TOOLS_DIR is build/tools: venv/ (kubernetes-validate) and bin/ (kustomize).
The script runs itself again with the venv's Python, which has PyYAML and
kubernetes-validate.
"""
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

IN_VENV = "EVENTBUS_KUBERNETES_TEST_IN_VENV"


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


if len(sys.argv) != 3:
    fail(f"usage: {sys.argv[0]} REPO TOOLS_DIR")
REPO, TOOLS = (os.path.abspath(a) for a in sys.argv[1:3])
VENV_PYTHON = os.path.join(TOOLS, "venv", "bin", "python")
if os.environ.get(IN_VENV) != "1":
    if not os.path.exists(VENV_PYTHON):
        fail(f"{VENV_PYTHON} is missing: run deploy/install-deps.sh (it installs kubernetes-validate there)")
    os.execve(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), REPO, TOOLS],
              dict(os.environ, **{IN_VENV: "1"}))

import yaml  # noqa: E402  (from the venv)
from kubernetes_validate import utils as kv  # noqa: E402

MANIFESTS = os.path.join(REPO, "deploy", "kubernetes")
SIDECAR_IMAGE = "eventbus-sidecar"
# The sidecar's defaults (docs/configuration.md).
DEFAULTS = {
    "server.listen": ["0.0.0.0:50051"],
    "server.shutdown_grace": "10s",
    "server.metrics_listen": "0.0.0.0:9464",
    "server.unix_socket_mode": "0660",
}
# After server.shutdown_grace the sidecar still needs up to about 2 s: at
# least 1 s to flush the producer and a moment for calls to end
# (server/sidecar.cc, Sidecar::Shutdown).
SHUTDOWN_AFTER_GRACE_S = 2
# The sidecar's memory measured in docs/benchmarks.md: idle RSS and the peak
# of the throughput runs. The request must cover idle, the limit the peak.
IDLE_RSS_BYTES = 31.5e6
PEAK_RSS_BYTES = 127.3e6
# Top-level config sections; an EVENTBUS_* variable outside them (other than
# EVENTBUS_CONFIG) stops the sidecar at start ("unknown config key").
CONFIG_SECTIONS = ("KAFKA_", "SERVER_", "ADMIN_", "EVENTS_", "LIMITS_", "SUBSCRIBE_", "LOG_")
# The sidecar's plain HTTP paths on the metrics port.
HTTP_PATHS = ("/healthz", "/readyz", "/metrics")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# The sidecar's gRPC health services (docs/operations.md, "Health and
# shutdown"): "" and "eventbus.v1.EventBus" are SERVING only while Kafka is
# reachable; "liveness" whenever the sidecar serves gRPC at all. Any other
# name is NOT_FOUND, and a probe of it never succeeds.
KAFKA_HEALTH_SERVICES = ("", "eventbus.v1.EventBus")
LIVENESS_SERVICE = "liveness"
# The HTTP twins on the metrics port: /readyz of the default service,
# /healthz of "liveness".
READY_PATH, LIVE_PATH = "/readyz", "/healthz"
PROBE_HANDLERS = ("grpc", "httpGet", "tcpSocket", "exec")
# The PodMonitor fields (monitoring.coreos.com/v1) the check accepts; the
# validator has no schema for this custom resource.
PODMONITOR_SPEC_FIELDS = {
    "selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel", "podTargetLabels",
    "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "attachMetadata", "scrapeProtocols", "scrapeClass", "fallbackScrapeProtocol",
}
PODMONITOR_ENDPOINT_FIELDS = {
    "port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "relabelings",
    "metricRelabelings", "tlsConfig", "bearerTokenSecret", "basicAuth", "oauth2", "authorization",
    "followRedirects", "enableHttp2", "filterRunning", "proxyUrl", "noProxy",
}


# ----------------------------------------------------------------- helpers
def renderer():
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = os.path.join(TOOLS, "bin", "kustomize")
    if os.access(kustomize, os.X_OK):
        return [kustomize, "build"]
    fail(f"neither kubectl nor {kustomize}: run deploy/install-deps.sh")


def render(directory):
    r = subprocess.run(renderer() + [directory], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RenderError(f"{' '.join(renderer())} {directory} failed:\n{r.stderr.strip()}")
    return [o for o in yaml.safe_load_all(r.stdout) if o]


class RenderError(Exception):
    pass


def name_of(obj):
    md = obj.get("metadata", {})
    ns = md.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{md.get('name')}"


def parse_duration(text):
    """Seconds in an eventbus duration: 10s, 500ms, 1m30s; a bare integer is ms."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return int(text) / 1000
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def parse_quantity(q):
    """A Kubernetes quantity as a number (cores for CPU, bytes for memory)."""
    q = str(q)
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "P": 1e15, "E": 1e18}
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?", q)
    if not m:
        raise ValueError(f"not a quantity: {q!r}")
    return float(m.group(1)) * suffixes.get(m.group(2), 1)


def flatten(tree, prefix=""):
    """{'server': {'listen': [...]}} -> {'server.listen': [...]} (eventbus joins nested keys with dots)."""
    out = {}
    for k, v in (tree or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def env_name(key):
    return "EVENTBUS_" + key.upper().replace(".", "_").replace("-", "_")


def host_port(address):
    """('0.0.0.0', 50051) of a TCP listen address, None for unix:."""
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        return None
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*):(\d+)", address)
    if not m:
        raise ValueError(f"not host:port or unix:/path: {address!r}")
    return m.group(1), int(m.group(2))


def is_within(path, directory):
    return os.path.normpath(path).startswith(os.path.normpath(directory).rstrip("/") + "/")


# ----------------------------------------------------------------- the pod
class Pod:
    """A Deployment with the eventbus sidecar, and what the sidecar will run with."""

    def __init__(self, deployment, objects):
        self.deployment = deployment
        self.name = name_of(deployment)
        self.template = deployment.get("spec", {}).get("template", {})
        self.spec = self.template.get("spec", {})
        self.objects = objects
        self.errors = []  # problems finding the sidecar or its config, reported by check `config`
        self.sidecar, self.sidecar_in = None, None
        for field in ("initContainers", "containers"):
            for c in self.spec.get(field) or []:
                if SIDECAR_IMAGE in str(c.get("image", "")):
                    self.sidecar, self.sidecar_in = c, field
        self.apps = [c for c in self.spec.get("containers") or [] if c is not self.sidecar]
        self.volumes = {v.get("name"): v for v in self.spec.get("volumes") or []}
        self.config = self._effective_config()

    def where(self, container=None):
        if container is None:
            return self.name
        field = "initContainers" if container in (self.spec.get("initContainers") or []) else "containers"
        return f"{self.name}: {field}[{container.get('name')}]"

    def env(self, container):
        return {e.get("name"): e for e in container.get("env") or []}

    def find(self, kind, name):
        for o in self.objects:
            if o.get("kind") == kind and o.get("metadata", {}).get("name") == name:
                return o
        return None

    def mount_for(self, container, path):
        """The volumeMount of `container` whose mountPath holds `path` (deepest)."""
        best = None
        for m in container.get("volumeMounts") or []:
            if is_within(path, m.get("mountPath", "")) and (
                    best is None or len(m["mountPath"]) > len(best["mountPath"])):
                best = m
        return best

    def _config_file(self):
        """(path, parsed YAML) of the file EVENTBUS_CONFIG names, from its ConfigMap."""
        env = self.env(self.sidecar)
        path = env.get("EVENTBUS_CONFIG", {}).get("value")
        if not path:
            self.errors.append(f"{self.where(self.sidecar)}: no EVENTBUS_CONFIG environment variable "
                               f"naming the config file")
            return None, {}
        mount = self.mount_for(self.sidecar, path)
        if mount is None:
            self.errors.append(f"{self.where(self.sidecar)}: EVENTBUS_CONFIG={path} is in no volumeMount")
            return path, {}
        volume = self.volumes.get(mount.get("name"), {})
        cm_ref = volume.get("configMap")
        if cm_ref is None:
            self.errors.append(f"{self.where(self.sidecar)}: EVENTBUS_CONFIG={path} is in volume "
                               f"{mount.get('name')!r}, which is not a configMap volume")
            return path, {}
        if mount.get("subPath"):
            self.errors.append(f"{self.where(self.sidecar)}: the config volume is mounted with subPath, "
                               f"which never sees ConfigMap updates")
        rel = os.path.relpath(path, mount["mountPath"])
        key = rel
        for item in cm_ref.get("items") or []:
            if item.get("path") == rel:
                key = item.get("key")
        cm = self.find("ConfigMap", cm_ref.get("name"))
        if cm is None:
            self.errors.append(f"{self.where(self.sidecar)}: the ConfigMap {cm_ref.get('name')!r} of "
                               f"EVENTBUS_CONFIG is not among the rendered objects")
            return path, {}
        if key not in (cm.get("data") or {}):
            self.errors.append(f"{name_of(cm)}: has no key {key!r}, the file EVENTBUS_CONFIG={path} names")
            return path, {}
        try:
            return path, yaml.safe_load(cm["data"][key]) or {}
        except yaml.YAMLError as e:
            self.errors.append(f"{name_of(cm)}: data.{key} is not YAML: {e}")
            return path, {}

    def _effective_config(self):
        """The keys the checks use, as the sidecar resolves them: flag > env > file > default."""
        if self.sidecar is None:
            return dict(DEFAULTS)
        self.config_path, file_config = self._config_file()
        self.file_config = flatten(file_config)
        config = dict(DEFAULTS)
        config.update(self.file_config)
        env = self.env(self.sidecar)
        for key in list(DEFAULTS) + ["server.tls.cert_file", "server.tls.key_file",
                                     "server.tls.client_ca_file", "server.tls.listen"]:
            e = env.get(env_name(key))
            if e is not None:
                if "value" not in e:
                    self.errors.append(f"{self.where(self.sidecar)}: env {e.get('name')} comes from "
                                       f"valueFrom; the test needs its value")
                    continue
                v = e["value"]
                config[key] = v.split(",") if key.endswith("listen") and key != "server.metrics_listen" else v
        args = list(self.sidecar.get("args") or []) + list(self.sidecar.get("command") or [])[1:]
        i = 0
        while i < len(args):
            m = re.fullmatch(r"--([a-z_.]+)(?:=(.*))?", str(args[i]))
            if m and m.group(1) in config or (m and m.group(1).startswith("server.tls.")):
                value = m.group(2)
                if value is None and i + 1 < len(args):
                    i += 1
                    value = args[i]
                key = m.group(1)
                config[key] = value.split(",") if key in ("server.listen", "server.tls.listen") else value
            i += 1
        if isinstance(config["server.listen"], str):
            config["server.listen"] = config["server.listen"].split(",")
        return config

    def listeners(self):
        """(unix socket paths, {tcp port: 'tls'|'plaintext'}) of server.listen."""
        unix, tcp = [], {}
        tls_on = bool(self.config.get("server.tls.cert_file"))
        tls_listen = self.config.get("server.tls.listen") or []
        if isinstance(tls_listen, str):
            tls_listen = tls_listen.split(",")
        for address in self.config["server.listen"]:
            address = str(address)
            if address.startswith("unix:"):
                unix.append(address[len("unix:"):])
                continue
            hp = host_port(address)
            if hp:
                tls = tls_on and (not tls_listen or address in tls_listen)
                tcp[hp[1]] = ("tls" if tls else "plaintext", hp[0])
        return unix, tcp

    def metrics_port(self):
        listen = str(self.config.get("server.metrics_listen") or "")
        return host_port(listen)[1] if listen else None

    def container_port(self, container, port):
        """The number of `port` (a number or a port name) among the container's ports, else None."""
        for p in container.get("ports") or []:
            if port == p.get("containerPort") or port == p.get("name"):
                return p.get("containerPort")
        return None


def pods_of(objects):
    return [Pod(o, objects) for o in objects if o.get("kind") == "Deployment"]


# ----------------------------------------------------------------- checks
# Each check takes the rendered objects and the variant's expectations and
# returns a list of problems, each naming the object and field.

def check_schema(objects, variant):
    errors = []
    for version in SCHEMA_VERSIONS:
        for o in objects:
            if o.get("kind") == "PodMonitor" and o.get("apiVersion") == "monitoring.coreos.com/v1":
                continue  # a custom resource: check `podmonitor`
            try:
                kv.validate(o, version, strict=True)
            except kv.SchemaNotFoundError as e:
                errors.append(f"{name_of(o)}: Kubernetes {version}: {e.message}")
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                errors.append(f"{name_of(o)}: Kubernetes {version} (strict): {path}: {e.message}")
    return errors


def sidecar_pods(objects, errors):
    pods = pods_of(objects)
    with_sidecar = [p for p in pods if p.sidecar is not None]
    if not with_sidecar:
        errors.append(f"no Deployment has a container whose image is {SIDECAR_IMAGE}")
    return with_sidecar


def check_native_sidecar(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        if pod.sidecar_in != "initContainers":
            errors.append(f"{pod.where(s)}: the eventbus sidecar is in {pod.sidecar_in}; a native sidecar "
                          f"is an initContainers entry with restartPolicy: Always")
        elif s.get("restartPolicy") != "Always":
            errors.append(f"{pod.where(s)}.restartPolicy: is {s.get('restartPolicy')!r}, must be 'Always' "
                          f"(else it is an init container that must exit before the application starts)")
        selector = pod.deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        labels = pod.template.get("metadata", {}).get("labels") or {}
        for k, v in selector.items():
            if labels.get(k) != v:
                errors.append(f"{pod.name}: spec.selector.matchLabels {k}={v} is not a label of the pod template")
    return errors


def check_probes(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        _, tcp = pod.listeners()
        metrics = pod.metrics_port()
        for p in s.get("ports") or []:
            n = p.get("containerPort")
            if n not in tcp and n != metrics:
                errors.append(f"{pod.where(s)}.ports[{p.get('name')}]: containerPort {n} is neither a TCP "
                              f"port of server.listen {pod.config['server.listen']} nor server.metrics_listen "
                              f"{pod.config.get('server.metrics_listen')!r}")
        for probe_name in PROBES:
            probe = s.get(probe_name)
            where = f"{pod.where(s)}.{probe_name}"
            if not probe:
                errors.append(f"{where}: missing")
                continue
            handlers = [h for h in PROBE_HANDLERS if probe.get(h) is not None]
            if len(handlers) != 1:
                errors.append(f"{where}: has {handlers or 'no handler'}; a probe has exactly one")
                continue
            h = handlers[0]
            port = (probe[h] or {}).get("port")
            number = pod.container_port(s, port)
            if number is None:
                errors.append(f"{where}.{h}.port: {port!r} is not one of the container's ports "
                              f"{[(p.get('name'), p.get('containerPort')) for p in s.get('ports') or []]}")
                continue
            if h == "grpc":
                if not isinstance(port, int):
                    errors.append(f"{where}.grpc.port: {port!r}: a gRPC probe's port must be a number")
                if number not in tcp:
                    errors.append(f"{where}.grpc.port: {number} is no TCP port of server.listen "
                                  f"{pod.config['server.listen']}")
                elif tcp[number][0] == "tls":
                    errors.append(f"{where}.grpc.port: {number} serves TLS (server.tls.*), and the kubelet's "
                                  f"gRPC probes speak plaintext only: probe an HTTP path of the metrics port "
                                  f"or leave a plaintext port (server.tls.listen)")
                elif tcp[number][1] in ("127.0.0.1", "localhost", "[::1]"):
                    errors.append(f"{where}.grpc.port: {number} listens on {tcp[number][1]} only; the "
                                  f"kubelet probes the pod's IP")
            elif h == "httpGet":
                path = probe["httpGet"].get("path", "/")
                if number != metrics:
                    errors.append(f"{where}.httpGet.port: {number} is not the metrics port "
                                  f"(server.metrics_listen {pod.config.get('server.metrics_listen')!r}), the "
                                  f"only HTTP the sidecar serves")
                elif path not in HTTP_PATHS:
                    errors.append(f"{where}.httpGet.path: {path!r} is none of the sidecar's paths {HTTP_PATHS}")
                elif probe_name == "livenessProbe" and path != LIVE_PATH:
                    errors.append(f"{where}.httpGet.path: {path!r}; liveness is {LIVE_PATH} ({READY_PATH} "
                                  f"fails whenever Kafka is unreachable, so this would restart a healthy "
                                  f"sidecar in every Kafka outage, and a restart cannot bring Kafka back)")
                elif probe_name != "livenessProbe" and path != READY_PATH:
                    errors.append(f"{where}.httpGet.path: {path!r}; {probe_name} is {READY_PATH} (200 only "
                                  f"while Kafka is reachable), or it would pass without Kafka")
            if h == "grpc":
                errors += grpc_probe_service(where, probe_name, probe["grpc"].get("service") or "")
    return errors


def grpc_probe_service(where, probe_name, service):
    """Problems with the health service name a gRPC probe asks for."""
    known = KAFKA_HEALTH_SERVICES + (LIVENESS_SERVICE,)
    named = repr(service) if service else "the default service ''"
    if service not in known:
        return [f"{where}.grpc.service: {service!r} is none of the sidecar's health services {known}: "
                f"the health check answers NOT_FOUND and the probe never succeeds"]
    if probe_name == "livenessProbe" and service != LIVENESS_SERVICE:
        return [f"{where}.grpc.service: {named} is NOT_SERVING whenever Kafka is unreachable, so this "
                f"would restart a healthy sidecar in every Kafka outage (failing the events it holds), and a "
                f"restart cannot bring Kafka back: use service: {LIVENESS_SERVICE}"]
    if probe_name != "livenessProbe" and service == LIVENESS_SERVICE:
        return [f"{where}.grpc.service: {service!r} is SERVING even while Kafka is unreachable, and "
                f"{probe_name} must follow Kafka: use the default service (no service)"]
    return []


def check_grace(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        try:
            grace = parse_duration(pod.config["server.shutdown_grace"])
        except ValueError as e:
            errors.append(f"{pod.name}: server.shutdown_grace: {e}")
            continue
        tgps = pod.spec.get("terminationGracePeriodSeconds", 30)
        need = grace + SHUTDOWN_AFTER_GRACE_S
        if not tgps > grace or tgps < need:
            errors.append(f"{pod.name}: spec.template.spec.terminationGracePeriodSeconds is {tgps}, but the "
                          f"sidecar needs server.shutdown_grace ({pod.config['server.shutdown_grace']}) + "
                          f"{SHUTDOWN_AFTER_GRACE_S} s = {need:g} s after the application has exited")
    return errors


def check_socket(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        unix, tcp = pod.listeners()
        if not unix:
            errors.append(f"{pod.name}: server.listen {pod.config['server.listen']} has no unix: socket")
        apps = [c for c in pod.apps if "EVENTBUS_ADDRESS" in pod.env(c)]
        if not apps:
            errors.append(f"{pod.name}: no application container has EVENTBUS_ADDRESS")
        for app in apps:
            where = f"{pod.where(app)}.env[EVENTBUS_ADDRESS]"
            address = pod.env(app)["EVENTBUS_ADDRESS"].get("value", "")
            if address.startswith("unix:"):
                path = address[len("unix:"):]
                if path not in unix:
                    errors.append(f"{where}: {address!r} is not a socket of the sidecar's server.listen "
                                  f"{pod.config['server.listen']}")
                    continue
                sm, am = pod.mount_for(s, path), pod.mount_for(app, path)
                if sm is None or am is None:
                    missing = [c.get("name") for c, m in ((s, sm), (app, am)) if m is None]
                    errors.append(f"{where}: no volume holding {path} is mounted in {missing}")
                    continue
                if sm.get("name") != am.get("name") or (
                        os.path.relpath(path, sm["mountPath"]) != os.path.relpath(path, am["mountPath"])):
                    errors.append(f"{where}: {path} is in volume {sm.get('name')!r} in the sidecar but in "
                                  f"{am.get('name')!r} in {app.get('name')}: they must share one volume")
                    continue
                if "emptyDir" not in pod.volumes.get(sm["name"], {}):
                    errors.append(f"{pod.name}: volume {sm['name']!r} of the socket is not an emptyDir")
                if sm.get("readOnly"):
                    errors.append(f"{pod.where(s)}.volumeMounts[{sm['name']}]: readOnly, but the sidecar "
                                  f"creates the socket there")
                errors += socket_access(pod, app)
            else:
                try:
                    hp = host_port(address)
                except ValueError as e:
                    errors.append(f"{where}: {e}")
                    continue
                if hp is None or hp[0] not in ("localhost", "127.0.0.1", "[::1]") or hp[1] not in tcp:
                    errors.append(f"{where}: {address!r} is neither a unix: socket nor localhost:<a TCP port "
                                  f"of server.listen {pod.config['server.listen']}>")
    return errors


def socket_access(pod, app):
    """Whether `app` may connect to the socket: the socket's mode and the pod's groups."""
    errors = []
    try:
        mode = int(str(pod.config["server.unix_socket_mode"]), 8)
    except ValueError:
        return [f"{pod.name}: server.unix_socket_mode {pod.config['server.unix_socket_mode']!r} is not octal"]
    world = mode & 0o006 == 0o006
    if world:
        return errors
    pod_sc = pod.spec.get("securityContext") or {}
    side_sc = pod.sidecar.get("securityContext") or {}
    app_sc = app.get("securityContext") or {}
    gid = side_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    uid = side_sc.get("runAsUser", pod_sc.get("runAsUser"))
    app_uid = app_sc.get("runAsUser", pod_sc.get("runAsUser"))
    app_groups = {app_sc.get("runAsGroup", pod_sc.get("runAsGroup"))} | set(
        pod_sc.get("supplementalGroups") or []) | {pod_sc.get("fsGroup")}
    if mode & 0o600 == 0o600 and uid is not None and uid == app_uid:
        return errors
    if mode & 0o060 != 0o060:
        errors.append(f"{pod.name}: server.unix_socket_mode {pod.config['server.unix_socket_mode']} gives the "
                      f"group no read and write: {app.get('name')} (another user) cannot connect")
    elif gid is None or gid not in app_groups:
        errors.append(f"{pod.name}: the socket's group is the sidecar's runAsGroup ({gid}), which "
                      f"{app.get('name')} does not have: set the pod's securityContext.fsGroup to it")
    return errors


def check_security(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        sc = s.get("securityContext") or {}
        pod_sc = pod.spec.get("securityContext") or {}
        where = f"{pod.where(s)}.securityContext"
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            errors.append(f"{where}.runAsNonRoot: not true (nor in the pod's securityContext)")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            errors.append(f"{where}.runAsUser: 0 (root)")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}.readOnlyRootFilesystem: {sc.get('readOnlyRootFilesystem')!r}, must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}.allowPrivilegeEscalation: {sc.get('allowPrivilegeEscalation')!r}, "
                          f"must be false")
        if sc.get("privileged"):
            errors.append(f"{where}.privileged: true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{where}.capabilities.drop: {(sc.get('capabilities') or {}).get('drop')!r}, "
                          f"must contain ALL")
        if (sc.get("capabilities") or {}).get("add"):
            errors.append(f"{where}.capabilities.add: {sc['capabilities']['add']!r}; the sidecar needs none")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errors.append(f"{where}.seccompProfile.type: {seccomp!r} (nor in the pod's), must be RuntimeDefault")
    return errors


def check_resources(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        res = s.get("resources") or {}
        where = f"{pod.where(s)}.resources"
        values = {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                q = (res.get(kind) or {}).get(resource)
                if q is None:
                    errors.append(f"{where}.{kind}.{resource}: not set")
                    continue
                try:
                    values[kind, resource] = parse_quantity(q)
                except ValueError as e:
                    errors.append(f"{where}.{kind}.{resource}: {e}")
        for resource in ("cpu", "memory"):
            r, lim = values.get(("requests", resource)), values.get(("limits", resource))
            if r is not None and lim is not None and r > lim:
                errors.append(f"{where}: requests.{resource} is above limits.{resource}")
        if values.get(("requests", "memory"), IDLE_RSS_BYTES) < IDLE_RSS_BYTES:
            errors.append(f"{where}.requests.memory: {res['requests']['memory']} is below the sidecar's idle "
                          f"RSS measured in docs/benchmarks.md ({IDLE_RSS_BYTES / 1e6:g} MB)")
        if values.get(("limits", "memory"), PEAK_RSS_BYTES) < PEAK_RSS_BYTES:
            errors.append(f"{where}.limits.memory: {res['limits']['memory']} is below the sidecar's peak RSS "
                          f"measured in docs/benchmarks.md ({PEAK_RSS_BYTES / 1e6:g} MB): it would be OOM-killed")
    return errors


def check_config(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        errors += pod.errors
        image = str(s.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and tag in ("", "latest"):
            errors.append(f"{pod.where(s)}.image: {image!r} names no version; pin a tag such as 0.1.0 "
                          f"(kustomize images: newTag) or a digest")
        for e in s.get("env") or []:
            n = e.get("name", "")
            if n.startswith("EVENTBUS_") and n != "EVENTBUS_CONFIG" and not n[len("EVENTBUS_"):].startswith(
                    CONFIG_SECTIONS):
                errors.append(f"{pod.where(s)}.env[{n}]: no config key maps to it, and the sidecar refuses to "
                              f"start on an unknown EVENTBUS_* variable")
        # Files the sidecar reads must be in a volume it mounts.
        files = {k: v for k, v in pod.config.items() if k.startswith("server.tls.") and k.endswith("_file") and v}
        for key, value in pod.file_config.items():
            if key.startswith("kafka.") and key.endswith((".location", "_file")) and value:
                files[key] = str(value)
        for e in s.get("env") or []:
            if e.get("name", "").startswith("EVENTBUS_KAFKA_") and e.get("name", "").endswith(
                    ("_LOCATION", "_FILE")) and "value" in e:
                files[e["name"]] = e["value"]
        for what, path in files.items():
            mount = pod.mount_for(s, path)
            if mount is None:
                errors.append(f"{pod.where(s)}: {what}={path} is in no volumeMount of the sidecar")
                continue
            volume = pod.volumes.get(mount.get("name"))
            if volume is None:
                errors.append(f"{pod.name}: volumeMount {mount.get('name')!r} names no volume")
                continue
            items = (volume.get("secret") or volume.get("configMap") or {}).get("items")
            rel = os.path.relpath(path, mount["mountPath"])
            if items and rel not in [i.get("path") for i in items]:
                errors.append(f"{pod.name}: volume {mount['name']!r} projects only "
                              f"{[i.get('path') for i in items]}, not {rel} ({what})")
    return errors


def check_mounts(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        for c in (pod.spec.get("initContainers") or []) + (pod.spec.get("containers") or []):
            mounts = c.get("volumeMounts") or []
            for m in mounts:
                if m.get("name") not in pod.volumes:
                    errors.append(f"{pod.where(c)}.volumeMounts[{m.get('name')}]: no such volume")
                for outer in mounts:
                    if outer is not m and is_within(m.get("mountPath", ""), outer.get("mountPath", "")):
                        kind = [k for k in ("configMap", "secret") if k in pod.volumes.get(outer["name"], {})]
                        if kind:
                            errors.append(f"{pod.where(c)}.volumeMounts[{m.get('name')}]: {m['mountPath']} is "
                                          f"inside the read-only {kind[0]} volume at {outer['mountPath']}; the "
                                          f"container runtime cannot create the mount point there")
    return errors


def check_credentials(objects, variant):
    errors = []
    secret_words = ("PASSWORD", "SECRET", "TOKEN", "_KEY")
    for pod in sidecar_pods(objects, errors):
        s = pod.sidecar
        env = pod.env(s)
        for n in ("EVENTBUS_KAFKA_SASL_USERNAME", "EVENTBUS_KAFKA_SASL_PASSWORD"):
            if n not in env:
                errors.append(f"{pod.where(s)}.env: no {n}")
        for n, e in env.items():
            if any(w in n for w in secret_words) and not n.endswith(("_FILE", "_LOCATION")) and "value" in e:
                errors.append(f"{pod.where(s)}.env[{n}]: a literal value; credentials come from a Secret "
                              f"(valueFrom.secretKeyRef)")
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None:
                continue
            secret = pod.find("Secret", ref.get("name"))
            if secret is None:
                if variant.get("secrets_rendered"):
                    errors.append(f"{pod.where(s)}.env[{n}]: Secret {ref.get('name')!r} is not among the "
                                  f"rendered objects")
            elif ref.get("key") not in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}:
                errors.append(f"{pod.where(s)}.env[{n}]: {name_of(secret)} has no key {ref.get('key')!r}")
        for key, value in pod.file_config.items() if pod.sidecar else ():
            if re.search(r"(password|secret|sasl\.oauthbearer\.client\.secret|ssl\.key\.pem)$", key) and value:
                errors.append(f"{pod.name}: the ConfigMap's config file sets {key}; credentials belong in a "
                              f"Secret, as EVENTBUS_KAFKA_* environment variables")
    return errors


def check_metrics(objects, variant):
    errors = []
    for pod in sidecar_pods(objects, errors):
        metrics = pod.metrics_port()
        ann = pod.template.get("metadata", {}).get("annotations") or {}
        where = f"{pod.name}: spec.template.metadata.annotations"
        if metrics is None:
            errors.append(f"{pod.name}: server.metrics_listen is empty: no metrics and no liveness path")
            continue
        if pod.container_port(pod.sidecar, metrics) is None:
            errors.append(f"{pod.where(pod.sidecar)}.ports: no containerPort {metrics} (server.metrics_listen)")
        if ann.get("prometheus.io/scrape") != "true":
            errors.append(f"{where}[prometheus.io/scrape]: {ann.get('prometheus.io/scrape')!r}, must be 'true'")
        if ann.get("prometheus.io/port") != str(metrics):
            errors.append(f"{where}[prometheus.io/port]: {ann.get('prometheus.io/port')!r}, the metrics port "
                          f"is {metrics}")
        if ann.get("prometheus.io/path") != "/metrics":
            errors.append(f"{where}[prometheus.io/path]: {ann.get('prometheus.io/path')!r}, must be '/metrics'")
    return errors


def check_podmonitor(objects, variant):
    errors = []
    pods = sidecar_pods(objects, errors)
    monitors = [o for o in objects if o.get("kind") == "PodMonitor"]
    if variant.get("podmonitor") and not monitors:
        errors.append("no PodMonitor among the rendered objects")
    for pm in monitors:
        n = name_of(pm)
        if pm.get("apiVersion") != "monitoring.coreos.com/v1":
            errors.append(f"{n}: apiVersion {pm.get('apiVersion')!r}, must be monitoring.coreos.com/v1")
        if set(pm) - {"apiVersion", "kind", "metadata", "spec"}:
            errors.append(f"{n}: unknown top-level fields {sorted(set(pm) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
        spec = pm.get("spec") or {}
        if set(spec) - PODMONITOR_SPEC_FIELDS:
            errors.append(f"{n}: unknown spec fields {sorted(set(spec) - PODMONITOR_SPEC_FIELDS)}")
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not sel:
            errors.append(f"{n}: spec.selector.matchLabels is empty (it would select every pod)")
        matched = [p for p in pods if all(
            (p.template.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in sel.items())]
        if sel and not matched:
            errors.append(f"{n}: spec.selector.matchLabels {sel} selects no pod with the sidecar")
        ns = pm.get("metadata", {}).get("namespace")
        for p in matched:
            if p.deployment.get("metadata", {}).get("namespace") != ns and not spec.get("namespaceSelector"):
                errors.append(f"{n}: in namespace {ns!r}, the pods in "
                              f"{p.deployment.get('metadata', {}).get('namespace')!r}, and no namespaceSelector")
        endpoints = spec.get("podMetricsEndpoints") or []
        if not endpoints:
            errors.append(f"{n}: spec.podMetricsEndpoints is empty")
        for i, ep in enumerate(endpoints):
            where = f"{n}: spec.podMetricsEndpoints[{i}]"
            if set(ep) - PODMONITOR_ENDPOINT_FIELDS:
                errors.append(f"{where}: unknown fields {sorted(set(ep) - PODMONITOR_ENDPOINT_FIELDS)}")
            if ep.get("path", "/metrics") != "/metrics":
                errors.append(f"{where}.path: {ep.get('path')!r}, the sidecar serves /metrics")
            if "interval" in ep:
                try:
                    parse_duration(ep["interval"])
                except ValueError as e:
                    errors.append(f"{where}.interval: {e}")
            for p in matched:
                port = ep.get("port", ep.get("portNumber"))
                number = None
                if isinstance(port, str):  # port names are matched, not numbers
                    number = next((q.get("containerPort") for q in p.sidecar.get("ports") or []
                                   if q.get("name") == port), None)
                elif isinstance(port, int):
                    number = port
                if number != p.metrics_port():
                    errors.append(f"{where}.port: {port!r} is not the sidecar's metrics port "
                                  f"({p.metrics_port()}) in {p.name}")
    return errors


def check_networkpolicy(objects, variant):
    errors = []
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for pod in sidecar_pods(objects, errors):
        labels = pod.template.get("metadata", {}).get("labels") or {}
        ns = pod.deployment.get("metadata", {}).get("namespace")
        mine = [np for np in policies if np.get("metadata", {}).get("namespace") == ns and all(
            labels.get(k) == v for k, v in ((np.get("spec") or {}).get("podSelector", {}).get("matchLabels")
                                            or {}).items())]
        if variant.get("networkpolicy") and not mine:
            errors.append(f"{pod.name}: no NetworkPolicy selects its pods")
        _, tcp = pod.listeners()
        plaintext = [port for port, (mode, _) in tcp.items() if mode == "plaintext"]
        metrics = pod.metrics_port()
        ports_by_name = {}
        for c in (pod.spec.get("initContainers") or []) + (pod.spec.get("containers") or []):
            for p in c.get("ports") or []:
                ports_by_name[p.get("name")] = p.get("containerPort")
        metrics_allowed = False
        for np in mine:
            spec = np.get("spec") or {}
            types = spec.get("policyTypes") or ["Ingress"]
            if "Ingress" not in types:
                errors.append(f"{name_of(np)}: spec.policyTypes {types} leaves ingress open")
                continue
            for i, rule in enumerate(spec.get("ingress") or []):
                where = f"{name_of(np)}: spec.ingress[{i}]"
                if not rule.get("ports"):
                    errors.append(f"{where}: admits every port, the plaintext gRPC port(s) {plaintext} too")
                    metrics_allowed = True
                    continue
                for p in rule["ports"]:
                    port = p.get("port")
                    number = ports_by_name.get(port) if isinstance(port, str) else port
                    end = p.get("endPort", number)
                    if port is None:
                        errors.append(f"{where}: a ports entry without port admits every port")
                        metrics_allowed = True
                        continue
                    for g in plaintext:
                        if number is not None and number <= g <= end:
                            errors.append(f"{where}: admits port {port} ({g}), where the sidecar serves gRPC "
                                          f"without TLS to anyone who connects")
                    if number is not None and number <= (metrics or -1) <= end:
                        metrics_allowed = True
        if mine and metrics is not None and not metrics_allowed:
            errors.append(f"{pod.name}: no NetworkPolicy rule admits the metrics port {metrics}: Prometheus "
                          f"cannot scrape it")
    return errors


CHECKS = {
    "schema": check_schema,
    "native_sidecar": check_native_sidecar,
    "probes": check_probes,
    "grace": check_grace,
    "socket": check_socket,
    "security": check_security,
    "resources": check_resources,
    "config": check_config,
    "mounts": check_mounts,
    "credentials": check_credentials,
    "metrics": check_metrics,
    "podmonitor": check_podmonitor,
    "networkpolicy": check_networkpolicy,
}

# What each rendered directory must have beyond the checks.
VARIANTS = {
    "base": {"networkpolicy": True},
    "example": {"networkpolicy": True, "podmonitor": True, "secrets_rendered": True},
    "example-tls": {"networkpolicy": True, "podmonitor": True, "secrets_rendered": True},
}


def run_checks(objects, variant, only=None):
    return {name: check(objects, variant) for name, check in CHECKS.items() if only is None or name in only}


# ----------------------------------------------------------------- the tree
def make_tree(root):
    """A copy of deploy/kubernetes in `root`, with example-tls: the example and the TLS component."""
    tree = os.path.join(root, "kubernetes")
    shutil.copytree(MANIFESTS, tree)
    os.makedirs(os.path.join(tree, "example-tls"))
    with open(os.path.join(tree, "example-tls", "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources: [../example]\ncomponents: [../components/tls]\n")
    return tree


def edit_yaml(tree, rel, fn):
    """Loads every document of tree/rel, lets fn change the list, writes it back."""
    path = os.path.join(tree, rel)
    with open(path) as f:
        docs = list(yaml.safe_load_all(f))
    fn(docs)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def edit_text(tree, rel, old, new):
    path = os.path.join(tree, rel)
    with open(path) as f:
        text = f.read()
    if old not in text:
        raise AssertionError(f"the broken copy cannot be made: {old!r} is not in {rel}")
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def pod_spec(docs):
    return docs[0]["spec"]["template"]["spec"]


def sidecar(docs):
    return pod_spec(docs)["initContainers"][0]


def app(docs):
    return pod_spec(docs)["containers"][0]


def deployment(fn):
    return lambda tree: edit_yaml(tree, "base/deployment.yaml", lambda docs: fn(docs))


def move_to_containers(docs):
    s = pod_spec(docs).pop("initContainers")[0]
    s.pop("restartPolicy")
    pod_spec(docs)["containers"].insert(0, s)


def plain_password(docs):
    for e in sidecar(docs)["env"]:
        if e["name"] == "EVENTBUS_KAFKA_SASL_PASSWORD":
            e.pop("valueFrom")
            e["value"] = "hunter2"


def open_grpc_port(docs):
    docs[0]["spec"]["ingress"].append({"ports": [{"port": 50051, "protocol": "TCP"}]})


def set_env(name, value):
    def fn(docs):
        env = sidecar(docs)["env"]
        for e in env:
            if e["name"] == name:
                e.clear()
                e.update({"name": name, "value": value})
                return
        env.append({"name": name, "value": value})
    return fn


# (what is broken, the directory rendered, how, the check that must fail)
BROKEN = [
    ("the sidecar has no restartPolicy", "base",
     deployment(lambda d: sidecar(d).pop("restartPolicy")), "native_sidecar"),
    ("the sidecar is a regular container", "base", deployment(move_to_containers), "native_sidecar"),
    ("the readiness probe's port is not the gRPC port", "base",
     deployment(lambda d: sidecar(d)["readinessProbe"]["grpc"].update(port=50052)), "probes"),
    ("the liveness probe names a port the sidecar lacks", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml",
                         "              path: /healthz\n              port: metrics\n",
                         "              path: /healthz\n              port: metric\n"), "probes"),
    ("the gRPC liveness probe on the default service (fails with Kafka)", "base",
     deployment(lambda d: sidecar(d)["livenessProbe"]["grpc"].pop("service")), "probes"),
    ("the gRPC liveness probe on eventbus.v1.EventBus (fails with Kafka)", "base",
     deployment(lambda d: sidecar(d)["livenessProbe"]["grpc"].update(service="eventbus.v1.EventBus")),
     "probes"),
    ("a gRPC probe of a health service the sidecar lacks", "base",
     deployment(lambda d: sidecar(d)["livenessProbe"]["grpc"].update(service="live")), "probes"),
    ("the readiness probe on the liveness service (ready without Kafka)", "base",
     deployment(lambda d: sidecar(d)["readinessProbe"]["grpc"].update(service="liveness")), "probes"),
    ("the HTTP liveness probe on /readyz (fails with Kafka)", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml", "path: /healthz", "path: /readyz"), "probes"),
    ("the HTTP startup probe on /healthz (starts the application without Kafka)", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml", "path: /readyz", "path: /healthz"), "probes"),
    ("TLS on the port the gRPC liveness probe uses", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml",
                         "          livenessProbe:\n            grpc: null\n            httpGet:\n"
                         "              path: /healthz\n              port: metrics\n", ""), "probes"),
    ("the startup probe is missing", "base", deployment(lambda d: sidecar(d).pop("startupProbe")), "probes"),
    ("the gRPC port is another one in the config", "base",
     lambda t: edit_text(t, "base/eventbus.yaml", "- 0.0.0.0:50051", "- 0.0.0.0:50052"), "probes"),
    ("TLS on the port the gRPC probes use", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml",
                         "          readinessProbe:\n            grpc: null\n            httpGet:\n"
                         "              path: /readyz\n              port: metrics\n", ""), "probes"),
    ("a probe with two handlers", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml",
                         "          startupProbe:\n            grpc: null\n", "          startupProbe:\n"),
     "probes"),
    ("server.shutdown_grace longer than the pod's grace period", "base",
     lambda t: edit_text(t, "base/eventbus.yaml", "shutdown_grace: 10s", "shutdown_grace: 1m"), "grace"),
    ("terminationGracePeriodSeconds leaves no time to flush", "base",
     deployment(lambda d: pod_spec(d).update(terminationGracePeriodSeconds=11)), "grace"),
    ("shutdown_grace raised through the environment", "example",
     deployment(set_env("EVENTBUS_SERVER_SHUTDOWN_GRACE", "45s")), "grace"),
    ("the application's socket path is not the sidecar's", "base",
     deployment(lambda d: app(d)["env"][0].update(value="unix:/var/run/eventbus/other.sock")), "socket"),
    ("the socket volume is not mounted in the application", "base",
     deployment(lambda d: app(d).pop("volumeMounts")), "socket"),
    ("the socket is in another volume in the application", "base",
     deployment(lambda d: (pod_spec(d)["volumes"].append({"name": "other", "emptyDir": {}}),
                           app(d)["volumeMounts"][0].update(name="other"))), "socket"),
    ("the socket's mode shuts the application's group out", "base",
     lambda t: edit_text(t, "base/eventbus.yaml", 'unix_socket_mode: "0660"', 'unix_socket_mode: "0600"'),
     "socket"),
    ("no fsGroup: the application lacks the socket's group", "base",
     deployment(lambda d: pod_spec(d)["securityContext"].pop("fsGroup")), "socket"),
    ("the root filesystem is writable", "base",
     deployment(lambda d: sidecar(d)["securityContext"].update(readOnlyRootFilesystem=False)), "security"),
    ("capabilities are not dropped", "base",
     deployment(lambda d: sidecar(d)["securityContext"].pop("capabilities")), "security"),
    ("privilege escalation allowed", "base",
     deployment(lambda d: sidecar(d)["securityContext"].pop("allowPrivilegeEscalation")), "security"),
    ("no seccomp profile", "base",
     deployment(lambda d: (sidecar(d)["securityContext"].pop("seccompProfile"),
                           pod_spec(d)["securityContext"].pop("seccompProfile"))), "security"),
    ("runs as root", "base",
     deployment(lambda d: (sidecar(d)["securityContext"].update(runAsUser=0),
                           sidecar(d)["securityContext"].pop("runAsNonRoot"),
                           pod_spec(d)["securityContext"].pop("runAsNonRoot"))), "security"),
    ("no resource limits", "base", deployment(lambda d: sidecar(d)["resources"].pop("limits")), "resources"),
    ("a memory limit below the measured peak", "base",
     deployment(lambda d: sidecar(d)["resources"]["limits"].update(memory="64Mi")), "resources"),
    ("the config file is not where EVENTBUS_CONFIG says", "base",
     deployment(set_env("EVENTBUS_CONFIG", "/etc/eventbus-config/eventbus.yaml")), "config"),
    ("the sidecar image is not pinned", "example",
     lambda t: edit_text(t, "example/kustomization.yaml", "newTag: 0.1.0", "newTag: latest"), "config"),
    ("an EVENTBUS_* variable the sidecar does not know", "base",
     deployment(set_env("EVENTBUS_ADDRESS", "unix:/var/run/eventbus/eventbus.sock")), "config"),
    ("the Kafka CA file is not mounted", "example",
     lambda t: edit_text(t, "example/kafka-ca.yaml", "value: /etc/kafka-ca/ca.crt",
                         "value: /etc/kafka/ca.crt"), "config"),
    ("a mount inside the read-only ConfigMap volume", "example-tls",
     lambda t: edit_text(t, "components/tls/sidecar-tls.yaml", "mountPath: /etc/eventbus-tls",
                         "mountPath: /etc/eventbus/tls"), "mounts"),
    ("the Kafka password as a literal value", "base", deployment(plain_password), "credentials"),
    ("the Secret lacks the key the sidecar reads", "example",
     lambda t: edit_text(t, "example/kustomization.yaml", "- password=change-me", "- pass=change-me"),
     "credentials"),
    ("a password in the ConfigMap", "example",
     lambda t: edit_text(t, "example/eventbus.yaml", "kafka:\n", "kafka:\n  sasl.password: hunter2\n"),
     "credentials"),
    ("the scrape annotation names another port", "base",
     deployment(lambda d: docs_annotations(d).update({"prometheus.io/port": "50051"})), "metrics"),
    ("the PodMonitor names a port the sidecar lacks", "example",
     lambda t: edit_text(t, "components/prometheus-operator/podmonitor.yaml", "port: metrics", "port: grpc"),
     "podmonitor"),
    ("the PodMonitor selects no pod", "example",
     lambda t: edit_yaml(t, "components/prometheus-operator/podmonitor.yaml",
                         lambda d: d[0]["spec"]["selector"]["matchLabels"].update(
                             {"app.kubernetes.io/name": "other"})), "podmonitor"),
    ("a misspelt PodMonitor field", "example",
     lambda t: edit_text(t, "components/prometheus-operator/podmonitor.yaml", "podMetricsEndpoints:",
                         "podMetricEndpoints:"), "podmonitor"),
    ("the NetworkPolicy admits the plaintext gRPC port", "base",
     lambda t: edit_yaml(t, "base/networkpolicy.yaml", open_grpc_port), "networkpolicy"),
    ("the NetworkPolicy shuts out Prometheus", "base",
     lambda t: edit_yaml(t, "base/networkpolicy.yaml", lambda d: d[0]["spec"]["ingress"].pop()),
     "networkpolicy"),
    ("a misspelt field (strict schema)", "base",
     deployment(lambda d: sidecar(d)["startupProbe"].update(periodSecond=2)), "schema"),
    ("a wrong type (schema)", "base", deployment(lambda d: d[0]["spec"].update(replicas="two")), "schema"),
    ("an API version Kubernetes does not serve", "base",
     lambda t: edit_text(t, "base/networkpolicy.yaml", "apiVersion: networking.k8s.io/v1",
                         "apiVersion: networking.k8s.io/v2"), "schema"),
]


def docs_annotations(docs):
    return docs[0]["spec"]["template"]["metadata"]["annotations"]


# ----------------------------------------------------------------- main
def main():
    global SCHEMA_VERSIONS
    start = time.time()
    SCHEMA_VERSIONS = ["1.29", kv.major_minor(kv.latest_version())]
    tool = renderer()
    version = subprocess.run(tool[:1] + (["version", "--client"] if "kubectl" in tool[0] else ["version"]),
                             capture_output=True, text=True).stdout.strip().replace("\n", "; ")
    print(f"rendering with {' '.join(tool)} ({version}); kubernetes-validate {kv.__version__}, "
          f"strict schemas of Kubernetes {' and '.join(SCHEMA_VERSIONS)}")
    problems = 0
    with tempfile.TemporaryDirectory(prefix="eventbus-k8s-") as tmp:
        tree = make_tree(os.path.join(tmp, "good"))
        for name, variant in VARIANTS.items():
            try:
                objects = render(os.path.join(tree, name))
            except RenderError as e:
                print(f"FAILED: {name}: {e}", file=sys.stderr)
                problems += 1
                continue
            kinds = ", ".join(sorted(f"{o['kind']}" for o in objects))
            print(f"{name}: {len(objects)} objects ({kinds})")
            for check, errors in run_checks(objects, variant).items():
                for e in errors:
                    print(f"FAILED: {name}: check {check}: {e}", file=sys.stderr)
                problems += len(errors)
                if not errors:
                    print(f"  ok {check}")
        if problems:
            fail(f"{problems} problem(s) in deploy/kubernetes (above)")

        # Each check must catch its broken copy.
        print(f"broken copies ({len(BROKEN)}), each must fail its check:")
        covered = set()
        for i, (what, name, breaker, check) in enumerate(BROKEN):
            tree = make_tree(os.path.join(tmp, f"broken-{i}"))
            breaker(tree)
            try:
                objects = render(os.path.join(tree, name))
            except RenderError as e:
                print(f"FAILED: broken copy {what!r}: does not render, so it shows nothing: {e}",
                      file=sys.stderr)
                problems += 1
                continue
            errors = run_checks(objects, VARIANTS[name], only={check})[check]
            if not errors:
                print(f"FAILED: broken copy {what!r} ({name}): check {check} did not notice", file=sys.stderr)
                problems += 1
            else:
                covered.add(check)
                print(f"  {check} catches {what}: {errors[0]}")
            shutil.rmtree(os.path.dirname(tree))
        untested = set(CHECKS) - covered
        if untested and not problems:
            print(f"FAILED: no broken copy shows these checks bite: {sorted(untested)}", file=sys.stderr)
            problems += 1
    if problems:
        fail(f"{problems} problem(s) (above)")
    print(f"kubernetes manifests: {len(VARIANTS)} renderings and {len(BROKEN)} broken copies checked "
          f"in {time.time() - start:.1f} s")


SCHEMA_VERSIONS = []

if __name__ == "__main__":
    main()
