// SubscribeResponseWriter against what it stands in for: FillDelivery and
// Protobuf's serializer. A client parses both into the same message.

#include "server/subscribe_response_writer.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {
namespace {

struct RecordSpec {
  std::vector<kafka::Header> headers;
  std::optional<std::string> value = "hello";
  std::optional<std::string> key = "k";
  int64_t timestamp_ms = 1714566896789;
  int32_t partition = 3;
  int64_t offset = 42;
};

kafka::Delivery MakeDelivery(const RecordSpec& spec, uint64_t id = 7,
                             int attempt = 1) {
  std::vector<kafka::HeaderView> views;
  for (const kafka::Header& h : spec.headers) views.push_back({h.name, h.value});
  std::optional<absl::string_view> key, value;
  if (spec.key) key = *spec.key;
  if (spec.value) value = *spec.value;
  return {id, attempt,
          std::make_shared<kafka::InboundRecord>(kafka::InboundRecord::Make(
              "orders", spec.partition, spec.offset, key, value, views,
              spec.timestamp_ms))};
}

v1::SubscribeResponse Parse(grpc::ByteBuffer buffer) {
  v1::SubscribeResponse parsed;
  grpc::ProtoBufferReader reader(&buffer);
  EXPECT_TRUE(parsed.ParseFromZeroCopyStream(&reader))
      << "a client cannot parse the response";
  return parsed;
}

// Writes `deliveries` with the writer and checks that a client parses what
// FillDelivery builds.
void ExpectSameAsProtobuf(const std::vector<kafka::Delivery>& deliveries) {
  SubscribeResponseWriter writer;
  v1::SubscribeResponse want;
  size_t sizes = 0;
  for (const kafka::Delivery& d : deliveries) {
    sizes += writer.AddDelivery(d);
    FillDelivery(d, want.add_deliveries());
  }
  grpc::ByteBuffer bytes = writer.Take();
  EXPECT_EQ(bytes.Length(), sizes);
  const v1::SubscribeResponse got = Parse(std::move(bytes));
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(want, got)) << diff;
  EXPECT_TRUE(writer.empty());
}

const std::vector<kafka::Header> kEvent = {{"ce_specversion", "1.0"},
                                           {"ce_id", "e1"},
                                           {"ce_source", "//s"},
                                           {"ce_type", "t"}};

std::vector<kafka::Header> EventWith(std::vector<kafka::Header> more) {
  std::vector<kafka::Header> h = kEvent;
  h.insert(h.end(), more.begin(), more.end());
  return h;
}

TEST(SubscribeResponseWriterTest, BinaryModeEvent) {
  ExpectSameAsProtobuf({MakeDelivery({.headers = EventWith(
                                          {{"ce_subject", "s1"},
                                           {"ce_dataschema", "urn:x"},
                                           {"ce_datacontenttype", "text/csv"},
                                           {"ce_time", "2024-05-01T12:34:56.789Z"},
                                           {"ce_tenant", "acme"},
                                           {"ce_traceparent", "00-ab-cd-01"},
                                           {"content-type", "text/plain"}})},
                                     9, 3)});
}

TEST(SubscribeResponseWriterTest, LaterHeadersReplaceEarlierOnes) {
  ExpectSameAsProtobuf({MakeDelivery(
      {.headers = EventWith({{"ce_id", "e2"},
                             {"ce_tenant", "a"},
                             {"ce_tenant", "b"},
                             {"ce_time", "2024-05-01T00:00:00Z"},
                             {"ce_time", "1970-01-01T00:00:00Z"},
                             {"ce_", "empty name"},
                             {"ce_empty", ""},
                             {"ce_subject", "s"},
                             {"ce_subject", ""},
                             {"Content-Type", "text/a"},
                             {"content-type", "text/b"}})})});
}

TEST(SubscribeResponseWriterTest, ZeroAndEmptyValues) {
  ExpectSameAsProtobuf({
      MakeDelivery({.headers = kEvent, .value = "", .key = "",
                    .timestamp_ms = 0, .partition = 0, .offset = 0},
                   0, 0),
      MakeDelivery({.headers = kEvent, .value = std::nullopt,
                    .key = std::nullopt, .timestamp_ms = -1}),
      MakeDelivery({.headers = kEvent, .timestamp_ms = 999}),
  });
}

TEST(SubscribeResponseWriterTest, KeyThatIsNotUtf8GoesInRawKey) {
  ExpectSameAsProtobuf(
      {MakeDelivery({.headers = kEvent, .key = std::string("\x00\x01\xff", 3)})});
}

TEST(SubscribeResponseWriterTest, RecordsThatAreNotBinaryModeEvents) {
  ExpectSameAsProtobuf({
      // No specversion: raw.
      MakeDelivery({.headers = {{"ce_id", "e1"}, {"trace", "x"}}}),
      // A time that does not parse: raw.
      MakeDelivery({.headers = EventWith({{"ce_time", "yesterday"}})}),
      // Not UTF-8: raw.
      MakeDelivery({.headers = EventWith({{"ce_subject", "\xff"}})}),
      MakeDelivery({.headers = EventWith({{"content-type", "text/\xc3"}})}),
      // Structured mode.
      MakeDelivery({.headers = {{"content-type",
                                 "application/cloudevents+json"}},
                    .value = R"({"specversion":"1.0","id":"s1","source":"//s",)"
                             R"("type":"t","data":{"n":1}})"}),
      // A structured-mode value that is not an event: raw.
      MakeDelivery({.headers = {{"content-type",
                                 "application/cloudevents+json"}},
                    .value = "not json"}),
  });
}

TEST(SubscribeResponseWriterTest, LargeValuesAndManyDeliveries) {
  std::vector<kafka::Delivery> deliveries;
  for (int i = 0; i < 300; ++i) {
    deliveries.push_back(MakeDelivery(
        {.headers = EventWith({{"ce_n", std::to_string(i)}}),
         .value = std::string(static_cast<size_t>(i) * 97, 'x'),
         .partition = i % 7,
         .offset = int64_t{1} << (i % 60)},
        static_cast<uint64_t>(i) << 40, i));
  }
  ExpectSameAsProtobuf(deliveries);
}

TEST(SubscribeResponseWriterTest, AckErrorsFollowTheDeliveries) {
  SubscribeResponseWriter writer;
  writer.AddDelivery(MakeDelivery({.headers = kEvent}));
  v1::AckError error;
  error.set_delivery_id(12);
  error.mutable_status()->set_code(5);
  error.mutable_status()->set_message("delivery 12 is not outstanding");
  writer.AddAckError(error);
  const v1::SubscribeResponse got = Parse(writer.Take());
  ASSERT_EQ(got.deliveries_size(), 1);
  ASSERT_EQ(got.ack_errors_size(), 1);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      got.ack_errors(0), error));
  // Taken: the next response starts empty.
  EXPECT_TRUE(writer.empty());
  EXPECT_EQ(writer.Take().Length(), 0u);
}

}  // namespace
}  // namespace eventbus::server
