// The Subscription checks and the record -> Delivery conversion of the
// Subscribe stream.

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {
namespace {

v1::Subscription Valid() {
  v1::Subscription s;
  s.add_topics("orders");
  s.set_group("billing");
  return s;
}

void ExpectInvalid(const v1::Subscription& s, absl::string_view field) {
  absl::StatusOr<kafka::GroupConsumerOptions> got =
      ToGroupConsumerOptions(s, SubscribeOptions());
  ASSERT_FALSE(got.ok()) << field;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(got.status().message(), field))
      << got.status().message();
}

TEST(SubscribeOptionsTest, DefaultsComeFromTheServer) {
  SubscribeOptions server;
  server.default_max_outstanding_messages = 77;
  server.default_max_outstanding_bytes = 1 << 20;
  server.default_ack_deadline = absl::Seconds(12);
  server.default_max_delivery_attempts = 9;
  server.dead_letter_suffix = ".dead";
  server.read_ahead_bytes = 4096;
  server.consumer_properties = {{"bootstrap.servers", "b:9092"}};
  absl::StatusOr<kafka::GroupConsumerOptions> got =
      ToGroupConsumerOptions(Valid(), server);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->topics, std::vector<std::string>{"orders"});
  EXPECT_EQ(got->group, "billing");
  EXPECT_EQ(got->start, kafka::StartPosition::kLatest);
  EXPECT_EQ(got->max_outstanding_messages, 77);
  EXPECT_EQ(got->max_outstanding_bytes, 1 << 20);
  EXPECT_EQ(got->ack_deadline, absl::Seconds(12));
  EXPECT_EQ(got->max_delivery_attempts, 9);
  EXPECT_EQ(got->dead_letter_suffix, ".dead");
  EXPECT_EQ(got->read_ahead_bytes, 4096);
  EXPECT_EQ(got->ordering, kafka::Ordering::kUnordered);
  EXPECT_EQ(got->properties.at("bootstrap.servers"), "b:9092");
}

TEST(SubscribeOptionsTest, TheSubscriptionsOwnValuesWin) {
  v1::Subscription s = Valid();
  s.add_topics("payments");
  s.set_start_position(v1::START_POSITION_TIME);
  s.mutable_start_time()->set_seconds(1700000000);
  s.set_max_outstanding_messages(5);
  s.set_max_outstanding_bytes(2048);
  s.mutable_ack_deadline()->set_seconds(3);
  s.set_max_delivery_attempts(2);
  s.set_dead_letter_topic("errors");
  s.set_ordering(v1::ORDERING_PER_KEY);
  absl::StatusOr<kafka::GroupConsumerOptions> got =
      ToGroupConsumerOptions(s, SubscribeOptions());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->topics, (std::vector<std::string>{"orders", "payments"}));
  EXPECT_EQ(got->start, kafka::StartPosition::kTime);
  EXPECT_EQ(got->start_time, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(got->max_outstanding_messages, 5);
  EXPECT_EQ(got->max_outstanding_bytes, 2048);
  EXPECT_EQ(got->ack_deadline, absl::Seconds(3));
  EXPECT_EQ(got->max_delivery_attempts, 2);
  EXPECT_EQ(got->dead_letter_topic, "errors");
  EXPECT_EQ(got->ordering, kafka::Ordering::kPerKey);
}

TEST(SubscribeOptionsTest, BadSubscriptionsNameTheField) {
  v1::Subscription s = Valid();
  s.clear_topics();
  ExpectInvalid(s, "subscription.topics");
  s = Valid();
  s.add_topics("bad topic");
  ExpectInvalid(s, "subscription.topics[1]");
  s = Valid();
  s.clear_group();
  ExpectInvalid(s, "subscription.group");
  s = Valid();
  s.set_start_position(v1::START_POSITION_TIME);
  ExpectInvalid(s, "subscription.start_time");
  s = Valid();
  s.set_max_outstanding_messages(100001);
  ExpectInvalid(s, "subscription.max_outstanding_messages");
  s = Valid();
  s.set_max_outstanding_messages(-1);
  ExpectInvalid(s, "subscription.max_outstanding_messages");
  s = Valid();
  s.set_max_outstanding_bytes(int64_t{1} << 40);
  ExpectInvalid(s, "subscription.max_outstanding_bytes");
  s = Valid();
  s.mutable_ack_deadline()->set_nanos(500000000);
  ExpectInvalid(s, "subscription.ack_deadline");
  s = Valid();
  s.mutable_ack_deadline()->set_seconds(601);
  ExpectInvalid(s, "subscription.ack_deadline");
  s = Valid();
  s.set_max_delivery_attempts(1001);
  ExpectInvalid(s, "subscription.max_delivery_attempts");
  s = Valid();
  s.set_dead_letter_topic("a/b");
  ExpectInvalid(s, "subscription.dead_letter_topic");
  s = Valid();
  s.set_ordering(static_cast<v1::Ordering>(7));
  ExpectInvalid(s, "subscription.ordering");
}

std::shared_ptr<const kafka::InboundRecord> MakeRecord(
    std::vector<kafka::Header> headers, std::string value, std::string key = "k") {
  std::vector<kafka::HeaderView> views;
  for (const kafka::Header& h : headers) views.push_back({h.name, h.value});
  return std::make_shared<kafka::InboundRecord>(kafka::InboundRecord::Make(
      "orders", 3, 42, key, value, views, 1714566896789));
}

// What a client does with a SubscribeResponse: serialize, parse. A proto3
// string that is not UTF-8 makes the parse fail, and with it every delivery
// of the message.
v1::Delivery OverTheWire(const v1::Delivery& d) {
  v1::SubscribeResponse response;
  *response.add_deliveries() = d;
  std::string wire;
  EXPECT_TRUE(response.SerializeToString(&wire));
  v1::SubscribeResponse parsed;
  EXPECT_TRUE(parsed.ParseFromString(wire)) << "the client cannot parse the response";
  return parsed.deliveries_size() == 1 ? parsed.deliveries(0) : v1::Delivery();
}

TEST(ToProtoDeliveryTest, CloudEventRecord) {
  kafka::Delivery d{7, 2,
                    MakeRecord({{"ce_specversion", "1.0"},
                                {"ce_id", "e1"},
                                {"ce_source", "//s"},
                                {"ce_type", "t"},
                                {"ce_tenant", "acme"},
                                {"content-type", "text/plain"}},
                               "hello")};
  v1::Delivery got = ToProtoDelivery(d);
  EXPECT_EQ(got.delivery_id(), 7u);
  EXPECT_EQ(got.attempt(), 2);
  EXPECT_EQ(got.topic(), "orders");
  EXPECT_EQ(got.partition(), 3);
  EXPECT_EQ(got.offset(), 42);
  EXPECT_EQ(got.key(), "k");
  EXPECT_EQ(got.record_time().seconds(), 1714566896);
  EXPECT_EQ(got.record_time().nanos(), 789000000);
  EXPECT_FALSE(got.raw());
  EXPECT_EQ(got.event().id(), "e1");
  EXPECT_EQ(got.event().type(), "t");
  EXPECT_EQ(got.event().data(), "hello");
  EXPECT_EQ(got.event().data_content_type(), "text/plain");
  EXPECT_EQ(got.event().extensions().at("tenant"), "acme");
  EXPECT_EQ(got.headers_size(), 0);
}

TEST(ToProtoDeliveryTest, RecordThatIsNotACloudEventArrivesRaw) {
  kafka::Delivery d{1, 1,
                    MakeRecord({{"trace", "x"}, {"content-type", "application/octet-stream"}},
                               std::string("\x00\x01", 2))};
  v1::Delivery got = ToProtoDelivery(d);
  EXPECT_TRUE(got.raw());
  EXPECT_EQ(got.event().data(), std::string("\x00\x01", 2));
  EXPECT_EQ(got.event().data_content_type(), "application/octet-stream");
  ASSERT_EQ(got.headers_size(), 2);
  EXPECT_EQ(got.headers(0).name(), "trace");
  EXPECT_EQ(got.headers(0).value(), "x");
}

TEST(ToProtoDeliveryTest, KeyThatIsNotUtf8ArrivesAsBytes) {
  const std::string key("\x00\x00\x01\x8f\xff", 5);  // e.g. a Java long
  kafka::Delivery d{1, 1,
                    MakeRecord({{"ce_specversion", "1.0"},
                                {"ce_id", "e1"},
                                {"ce_source", "//s"},
                                {"ce_type", "t"}},
                               "hello", key)};
  v1::Delivery got = OverTheWire(ToProtoDelivery(d));
  EXPECT_EQ(got.key(), "");
  EXPECT_EQ(got.raw_key(), key);
  EXPECT_FALSE(got.raw());
  EXPECT_EQ(got.event().id(), "e1");
}

TEST(ToProtoDeliveryTest, CeHeadersOrContentTypeThatAreNotUtf8ArriveRaw) {
  const std::vector<kafka::Header> base = {{"ce_specversion", "1.0"},
                                           {"ce_id", "e1"},
                                           {"ce_source", "//s"},
                                           {"ce_type", "t"}};
  for (const kafka::Header& bad :
       {kafka::Header{"ce_subject", "\xff"}, kafka::Header{"ce_\xfe", "x"},
        kafka::Header{"content-type", "text/\xc3"}}) {
    std::vector<kafka::Header> headers = base;
    headers.push_back(bad);
    headers.push_back({"\xffname", "v"});
    kafka::Delivery d{1, 1, MakeRecord(headers, "hello")};
    v1::Delivery got = OverTheWire(ToProtoDelivery(d));
    EXPECT_TRUE(got.raw()) << bad.name;
    EXPECT_EQ(got.event().data(), "hello");
    EXPECT_EQ(got.event().data_content_type(), "");
    ASSERT_EQ(got.headers_size(), 6);
    EXPECT_EQ(got.headers(4).value(), bad.value);
    EXPECT_EQ(got.headers(5).name(), "\xef\xbf\xbdname");  // U+FFFD
    EXPECT_EQ(got.headers(5).value(), "v");
  }
}

}  // namespace
}  // namespace eventbus::server
