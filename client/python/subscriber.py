#!/usr/bin/env python3
"""Seed scenario subscriber: a notification consumer.

Subscribes as a member of --group (from the earliest event), processes each
event once (the event id tells duplicates, which are acked and skipped), prints
one JSON line per processed event and acks it. Exits 0 once --count distinct
events were processed and acked, 1 on timeout or stream error.

The Subscribe stream is bidirectional: the request iterator reads from a
thread-safe queue, first the Subscription, then Ack messages.

Run through client/python/run.sh, which generates the stubs (eventbus.v1).
"""
import argparse
import json
import queue
import sys

import grpc

from eventbus.v1 import eventbus_pb2 as pb
from eventbus.v1 import eventbus_pb2_grpc as pb_grpc

CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
_CLOSE = object()  # put on the queue to half-close the stream


def requests_from(q: "queue.Queue"):
    while True:
        item = q.get()
        if item is _CLOSE:
            return
        yield item


def event_json(d: pb.Delivery) -> str:
    e = d.event
    return json.dumps({
        "id": e.id,
        "type": e.type,
        "source": e.source,
        "subject": e.subject,
        "data_content_type": e.data_content_type,
        "data": e.data.decode("utf-8", errors="replace"),
        "extensions": dict(sorted(e.extensions.items())),
        "key": d.key,
        "partition": d.partition,
        "offset": d.offset,
    }, separators=(",", ":"), ensure_ascii=False)


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
    p = argparse.ArgumentParser(description="Process user.registered events once each.")
    p.add_argument("--address", required=True, help="host:port or unix:/path of the sidecar")
    p.add_argument("--tls-ca", default="", help="connect with TLS, trusting these PEM CA certificates")
    p.add_argument("--tls-cert", default="", help="PEM client certificate (mTLS); with --tls-key")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout-seconds", type=float, default=60)
    a = p.parse_args()

    outbox: "queue.Queue" = queue.Queue()
    outbox.put(pb.SubscribeRequest(subscription=pb.Subscription(
        topics=[a.topic],
        group=a.group,
        start_position=pb.START_POSITION_EARLIEST,
    )))

    processed = set()  # event ids already processed
    closed = False
    with open_channel(a) as channel:
        stub = pb_grpc.EventBusStub(channel)
        # The deadline covers the whole run, so a stalled stream ends in DEADLINE_EXCEEDED.
        responses = stub.Subscribe(requests_from(outbox), timeout=a.timeout_seconds)
        try:
            for response in responses:
                for err in response.ack_errors:
                    name = CODE_NAMES.get(err.status.code, str(err.status.code))
                    print(f"subscriber: ack of delivery {err.delivery_id} failed: {name}: "
                          f"{err.status.message}", file=sys.stderr)
                if closed:
                    continue  # after the half-close: left unacked, they go back to the group
                ready = []
                for d in response.deliveries:
                    if len(processed) >= a.count:
                        break  # done: not acked, goes back to the group
                    if d.event.id not in processed:
                        print(event_json(d), flush=True)  # "process" the event
                        processed.add(d.event.id)
                    ready.append(d.delivery_id)  # a duplicate is acked and skipped
                if ready:
                    outbox.put(pb.SubscribeRequest(ack=pb.Ack(delivery_ids=ready)))
                if len(processed) >= a.count:
                    outbox.put(_CLOSE)  # final acks are queued before it
                    closed = True
            # The server ended the stream after our half-close: acks are applied.
        except grpc.RpcError as e:
            outbox.put(_CLOSE)
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                print(f"subscriber: timed out after {a.timeout_seconds:g}s with "
                      f"{len(processed)} of {a.count} events processed", file=sys.stderr)
            else:
                print(f"subscriber: Subscribe failed: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    if not closed:
        print(f"subscriber: stream ended after {len(processed)} of {a.count} events", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
