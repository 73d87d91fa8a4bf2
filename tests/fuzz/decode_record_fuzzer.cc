// Fuzz target: what the Subscribe path does with a record read from Kafka.
// FillDelivery decodes it into an Event (DecodeEventInto: ce_ headers in
// binary mode, the JSON value in structured mode) or, when it is not a
// CloudEvent, passes it on raw; DecodeRecord decodes the same record as a
// kafka::Record. Each record is decoded as it is (binary mode unless its own
// content-type header says structured), then again with a structured-mode
// content-type header added.
//
// The input is the record in an HTTP-like text form, so that seeds stay
// readable:
//   name:value      a header, split at the first ':' (none: an empty value)
//   :bytes          the record key (a line with an empty header name)
//   (empty line)    ends the headers; the rest of the input is the value
// Lines end at '\n' alone. Without an empty line the record has no value (a
// tombstone). Header lines past the first kMaxHeaders are ignored.

#include <google/protobuf/arena.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/consumer.h"
#include "kafka/record.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/event_codec.h"
#include "server/subscribe_response_writer.h"
#include "server/subscribe_reactor.h"
#include "tests/fuzz/fuzz_check.h"

namespace eventbus {
namespace {

constexpr size_t kMaxHeaders = 32;

struct RecordText {
  std::optional<absl::string_view> key;
  std::optional<absl::string_view> value;
  std::vector<kafka::HeaderView> headers;
};

RecordText ParseRecordText(absl::string_view in) {
  RecordText r;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t end = in.find('\n', pos);
    const absl::string_view line =
        in.substr(pos, end == absl::string_view::npos ? end : end - pos);
    if (end == absl::string_view::npos) {
      pos = in.size();
    } else {
      pos = end + 1;
      if (line.empty()) {
        r.value = in.substr(pos);
        break;
      }
    }
    const size_t colon = line.find(':');
    const absl::string_view name = line.substr(0, colon);
    const absl::string_view value = colon == absl::string_view::npos
                                        ? absl::string_view()
                                        : line.substr(colon + 1);
    if (colon == 0) {
      r.key = value;
    } else if (r.headers.size() < kMaxHeaders) {
      r.headers.push_back({name, value});
    }
  }
  return r;
}

void Decode(const RecordText& in) {
  auto record = std::make_shared<kafka::InboundRecord>(
      kafka::InboundRecord::Make("fuzz.topic", 3, 42, in.key, in.value,
                                 in.headers, 1714566896789));
  const kafka::Delivery delivery{7, 1, record};
  // As SubscribeReactor writes it: onto an arena.
  google::protobuf::Arena arena;
  auto* d = google::protobuf::Arena::CreateMessage<v1::Delivery>(&arena);
  server::FillDelivery(delivery, d);

  kafka::Record plain;
  if (in.key) plain.key = std::string(*in.key);
  plain.value = std::string(in.value.value_or(absl::string_view()));
  for (const kafka::HeaderView& h : in.headers) {
    plain.headers.push_back({std::string(h.name), std::string(h.value)});
  }
  const absl::StatusOr<v1::Event> decoded = server::DecodeRecord(plain);
  FUZZ_LOG("  %s\n", decoded.ok() ? decoded->ShortDebugString().c_str()
                                   : decoded.status().ToString().c_str());

  // FillDelivery's contract: the decoded CloudEvent, or the raw record.
  FUZZ_CHECK(decoded.ok() == !d->raw());
  if (decoded.ok()) {
    // The same, but JSON that structured mode re-encodes (data, and
    // attributes that are not strings) has an object's members in no fixed
    // order: only its length is the same.
    v1::Event a = *decoded;
    v1::Event b = d->event();
    FUZZ_CHECK(a.data().size() == b.data().size());
    FUZZ_CHECK(a.extensions_size() == b.extensions_size());
    for (const auto& [name, value] : a.extensions()) {
      FUZZ_CHECK(b.extensions().count(name) == 1);
      FUZZ_CHECK(b.extensions().at(name).size() == value.size());
    }
    for (v1::Event* e : {&a, &b}) {
      e->clear_data();
      e->clear_extensions();
    }
    FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(a, b));
    FUZZ_CHECK(!decoded->spec_version().empty());
    FUZZ_CHECK(d->headers_size() == 0);
  } else {
    FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(d->event().data() == plain.value);
    FUZZ_CHECK(d->headers_size() == static_cast<int>(in.headers.size()));
  }
  // A key that is not UTF-8 comes in raw_key (a proto3 string must be UTF-8).
  FUZZ_CHECK((d->raw_key().empty() ? d->key() : d->raw_key()) == plain.key.value_or(""));
  // What the client does with it: parse it. A string field that is not
  // UTF-8 would make this fail, and with it every delivery of the message.
  v1::SubscribeResponse response;
  *response.add_deliveries() = *d;
  std::string wire;
  FUZZ_CHECK(response.SerializeToString(&wire));
  v1::SubscribeResponse parsed;
  FUZZ_CHECK(parsed.ParseFromString(wire));

  // What the sidecar really sends: the SubscribeResponseWriter's encoding
  // straight from the record, which must parse into the same message.
  server::SubscribeResponseWriter writer;
  const size_t planned = writer.AddDelivery(delivery);
  grpc::ByteBuffer bytes = writer.Take();
  FUZZ_CHECK(bytes.Length() == planned);
  grpc::ProtoBufferReader reader(&bytes);
  v1::SubscribeResponse written;
  FUZZ_CHECK(written.ParseFromZeroCopyStream(&reader));
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(parsed, written));
}

}  // namespace
}  // namespace eventbus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using eventbus::kafka::HeaderView;
  eventbus::RecordText record = eventbus::ParseRecordText(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  eventbus::Decode(record);
  record.headers.push_back(
      HeaderView{"content-type", "application/cloudevents+json; charset=UTF-8"});
  eventbus::Decode(record);
  return 0;
}
