#!/usr/bin/env bash
# Writes the binary seeds of the protobuf fuzz targets from the text-format
# messages below: corpus/publish_request/*.pb (one serialized PublishRequest
# each) and corpus/subscribe_requests/*.pb (SubscribeRequests, each preceded
# by its length as a varint). The text seeds of the other targets are edited
# by hand. Needs protoc (Debian: protobuf-compiler).
#
# Usage: tests/fuzz/make_corpus.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROTO_DIR="$REPO/proto"
PROTO=eventbus/v1/eventbus.proto

encode() {  # encode MESSAGE_TYPE < text  -> binary on stdout
  protoc --encode="eventbus.v1.$1" -I "$PROTO_DIR" "$PROTO"
}

varint() {  # the varint of $1 on stdout
  local n=$1
  while ((n >= 128)); do
    printf '%b' "\\$(printf %03o $(((n & 127) | 128)))"
    n=$((n >> 7))
  done
  printf '%b' "\\$(printf %03o "$n")"
}

publish() {  # publish NAME < text
  encode PublishRequest >"$HERE/corpus/publish_request/$1.pb"
}

# subscribe NAME TEXT...: one SubscribeRequest per TEXT, delimited.
subscribe() {
  local name=$1 text bytes
  shift
  local tmp
  tmp="$(mktemp)"
  : >"$HERE/corpus/subscribe_requests/$name.pb"
  for text in "$@"; do
    encode SubscribeRequest <<<"$text" >"$tmp"
    bytes=$(stat -c %s "$tmp")
    { varint "$bytes"; cat "$tmp"; } >>"$HERE/corpus/subscribe_requests/$name.pb"
  done
  rm -f "$tmp"
}

mkdir -p "$HERE/corpus/publish_request" "$HERE/corpus/subscribe_requests"

publish minimal <<'PB'
topic: "orders"
event { type: "com.example.order.created" }
PB

publish full_json <<'PB'
topic: "orders.v1"
key: "order-42"
correlation_id: "c1"
event {
  id: "e1"
  source: "//orders/eu-1"
  type: "com.example.order.created"
  spec_version: "1.0"
  subject: "orders/42"
  time { seconds: 1714566896 nanos: 789000000 }
  data_content_type: "application/json; charset=utf-8"
  data_schema: "https://example.com/order.json"
  data: "{\"order\":42,\"items\":[\"a\",\"b\"],\"total\":1.5e2}"
  extensions { key: "tenant" value: "acme" }
  extensions { key: "partitionkey" value: "p1" }
}
PB

publish octets_before_1970 <<'PB'
topic: "raw_bytes-1"
event {
  type: "t"
  time { seconds: -86400 nanos: 1 }
  data_content_type: "application/octet-stream"
  data: "\000\001\377\376"
}
PB

publish first_year_large_integers <<'PB'
topic: "ledger"
event {
  type: "t"
  time { seconds: -62135596800 nanos: 5 }
  data_content_type: "application/json"
  data: " {\"id\": 12345678901234567891, \"n\": [[[[[[[[9007199254740993]]]]]]]]} "
}
PB

publish text_data <<'PB'
topic: "notes"
event {
  type: "t"
  data_content_type: "text/plain"
  data: "h\303\251llo \"world\"\n"
  extensions { key: "partitionkey" value: "k" }
}
PB

publish cloudevents_content_type <<'PB'
topic: "orders"
event {
  type: "t"
  data_content_type: "application/cloudevents+json"
  data: "{}"
}
PB

publish invalid_extension <<'PB'
topic: "orders"
event {
  type: "t"
  extensions { key: "Bad-Name" value: "x" }
}
PB

subscribe lifecycle \
  'subscription { topics: "orders" group: "g1" }' \
  'ack { delivery_ids: [1, 2, 3] }' \
  'nack { delivery_ids: 4 retry_delay { seconds: 5 } }' \
  'dead_letter { delivery_ids: 5 reason: "poison" }' \
  'modify_ack_deadline { delivery_ids: 6 ack_deadline { seconds: 60 } }' \
  'nack { delivery_ids: 7 }'

subscribe full_subscription \
  'subscription { topics: ["orders", "audit.v1"] group: "billing" start_position: START_POSITION_TIME start_time { seconds: 1714566896 } max_outstanding_messages: 10 max_outstanding_bytes: 1048576 ack_deadline { seconds: 1 nanos: 500000000 } max_delivery_attempts: 3 dead_letter_topic: "orders.dead" ordering: ORDERING_PER_KEY }' \
  'modify_ack_deadline { delivery_ids: 1 ack_deadline { seconds: 601 } }'

subscribe ack_before_subscription \
  'ack { delivery_ids: 1 }'

subscribe second_subscription \
  'subscription { topics: "orders" group: "g" start_position: START_POSITION_EARLIEST ordering: ORDERING_PER_PARTITION }' \
  'subscription { topics: "orders" group: "g" }'

subscribe empty_request_after_subscription \
  'subscription { topics: "orders" group: "g" }' \
  ''

subscribe bad_nack_delay \
  'subscription { topics: "orders" group: "g" }' \
  'nack { delivery_ids: 1 retry_delay { seconds: -1 } }'
