#!/usr/bin/env python3
"""Seed scenario publisher: a user service emitting `user.registered` events.

Publishes --count events on a PublishStream (many events per message) and
waits for every result. Prints one JSON line per acknowledged event; exits 1
with the status of every failed event.

Run through client/python/run.sh, which generates the stubs (eventbus.v1).
"""
import argparse
import json
import secrets
import sys
import uuid

import grpc

from eventbus.v1 import eventbus_pb2 as pb
from eventbus.v1 import eventbus_pb2_grpc as pb_grpc

BATCH = 100  # events per PublishBatchRequest message
CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def open_channel(a):
    """A channel to the sidecar: TLS when any --tls-* flag is given."""
    if not (a.tls_ca or a.tls_cert or a.tls_key):
        return grpc.insecure_channel(a.address)

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    return grpc.secure_channel(a.address, grpc.ssl_channel_credentials(
        root_certificates=read(a.tls_ca) if a.tls_ca else None,
        private_key=read(a.tls_key) if a.tls_key else None,
        certificate_chain=read(a.tls_cert) if a.tls_cert else None))


def main() -> int:
    p = argparse.ArgumentParser(description="Publish user.registered events.")
    p.add_argument("--address", required=True, help="host:port or unix:/path of the sidecar")
    p.add_argument("--tls-ca", default="", help="connect with TLS, trusting these PEM CA certificates")
    p.add_argument("--tls-cert", default="", help="PEM client certificate (mTLS); with --tls-key")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--run-id", default=secrets.token_hex(4), help="default: random hex")
    p.add_argument("--traceparent", default="",
                   help="W3C trace context to send in the call's metadata, as a tracing "
                        "library would; the sidecar gives it to every event (ce_traceparent)")
    a = p.parse_args()

    requests = []
    for i in range(1, a.count + 1):
        user_id = f"u-{a.run_id}-{i}"
        data = json.dumps({"user_id": user_id, "email": f"user{i}@example.com"},
                          separators=(",", ":"))
        requests.append(pb.PublishRequest(
            topic=a.topic,
            key=user_id,
            correlation_id=str(i),
            event=pb.Event(
                id=str(uuid.uuid4()),
                type="user.registered",
                source="//users/python",
                subject=f"users/{user_id}",
                data_content_type="application/json",
                data=data.encode("utf-8"),
                extensions={"runid": a.run_id},
            ),
        ))

    def batches():
        for start in range(0, len(requests), BATCH):
            yield pb.PublishBatchRequest(requests=requests[start:start + BATCH])

    results = {}
    with open_channel(a) as channel:
        stub = pb_grpc.EventBusStub(channel)
        try:
            # Results may come in any order: match them by correlation_id.
            metadata = [("traceparent", a.traceparent)] if a.traceparent else None
            for response in stub.PublishStream(batches(), metadata=metadata):
                for r in response.responses:
                    results[r.correlation_id] = r
        except grpc.RpcError as e:
            print(f"publisher: PublishStream failed: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1

    failed = 0
    for req in requests:
        r = results.get(req.correlation_id)
        if r is None:
            failed += 1
            print(f"publisher: no result for event {req.event.id} ({req.key})", file=sys.stderr)
        elif r.status.code != 0:
            failed += 1
            name = CODE_NAMES.get(r.status.code, str(r.status.code))
            print(f"publisher: event {req.event.id} ({req.key}) failed: {name}: {r.status.message}",
                  file=sys.stderr)
        else:
            e = req.event
            print(json.dumps({
                "id": r.event_id,
                "type": e.type,
                "source": e.source,
                "subject": e.subject,
                "data_content_type": e.data_content_type,
                "data": e.data.decode("utf-8", errors="replace"),
                "extensions": dict(sorted(e.extensions.items())),
                "key": req.key,
                "partition": r.partition,
                "offset": r.offset,
            }, separators=(",", ":"), ensure_ascii=False), flush=True)
    if failed:
        print(f"publisher: {failed} of {len(requests)} events failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
