// The CloudEvents <-> Kafka record mapping: defaults and validation
// (PrepareRequest), both content modes and the size limit (EncodeRecord), and
// decoding back (DecodeRecord).

#include "server/event_codec.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/record.h"

namespace eventbus::server {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

constexpr absl::string_view kDefaultSource = "//eventbus/test-host";
constexpr int64_t kNoLimit = int64_t{1} << 40;

// 2024-05-01T12:34:56.789Z
absl::Time TestNow() {
  return absl::FromCivil(absl::CivilSecond(2024, 5, 1, 12, 34, 56),
                         absl::UTCTimeZone()) +
         absl::Milliseconds(789);
}
constexpr int64_t kTestNowSeconds = 1714566896;  // 2024-05-01T12:34:56Z

bool IsUuidV4(const std::string& s) {
  static const std::regex re(
      "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  return std::regex_match(s, re);
}

kafka::Header H(std::string name, std::string value) {
  return kafka::Header{std::move(name), std::move(value)};
}

// Headers as pairs, which GoogleTest prints readably.
using HeaderPairs = std::vector<std::pair<std::string, std::string>>;
HeaderPairs Pairs(const std::vector<kafka::Header>& headers) {
  HeaderPairs out;
  for (const kafka::Header& h : headers) out.emplace_back(h.name, h.value);
  return out;
}

// A request that passes PrepareRequest as it is.
v1::PublishRequest MinimalRequest() {
  v1::PublishRequest r;
  r.set_topic("orders");
  r.mutable_event()->set_type("com.example.order.created");
  return r;
}

// A request with every event attribute set by the caller.
v1::PublishRequest FullRequest() {
  v1::PublishRequest r;
  r.set_topic("orders.eu-1");
  r.set_correlation_id("c-1");
  v1::Event& e = *r.mutable_event();
  e.set_id("evt-1");
  e.set_source("//orders/eu-1");
  e.set_type("com.example.order.created");
  e.set_spec_version("1.0");
  e.set_subject("orders/42");
  e.mutable_time()->set_seconds(kTestNowSeconds);
  e.mutable_time()->set_nanos(789000000);
  e.set_data_content_type("application/json");
  e.set_data_schema("https://schemas.example.com/order.json");
  e.set_data(R"({"order":42})");
  (*e.mutable_extensions())["tenant"] = "acme";
  (*e.mutable_extensions())["traceparent"] = "00-abc-01";
  return r;
}

// The request after PrepareRequest, which must succeed.
v1::PublishRequest Prepared(v1::PublishRequest r) {
  absl::Status s = PrepareRequest(r, kDefaultSource, TestNow());
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

kafka::Record EncodeOrDie(v1::PublishRequest r, ContentMode mode) {
  absl::StatusOr<kafka::Record> record = EncodeRecord(r, mode, kNoLimit);
  EXPECT_TRUE(record.ok()) << record.status();
  return record.ok() ? *std::move(record) : kafka::Record{};
}

std::optional<std::string> HeaderValue(const kafka::Record& r,
                                       absl::string_view name) {
  std::optional<std::string> found;
  for (const kafka::Header& h : r.headers) {
    if (h.name == name) {
      EXPECT_FALSE(found.has_value()) << "header " << name << " repeated";
      found = h.value;
    }
  }
  return found;
}

google::protobuf::Struct ParseJsonObject(const std::string& json) {
  google::protobuf::Struct doc;
  auto status = google::protobuf::util::JsonStringToMessage(json, &doc);
  EXPECT_TRUE(status.ok()) << status << " in " << json;
  return doc;
}

std::string StringField(const google::protobuf::Struct& doc,
                        const std::string& name) {
  auto it = doc.fields().find(name);
  if (it == doc.fields().end()) return "<missing>";
  if (it->second.kind_case() != google::protobuf::Value::kStringValue) {
    return "<not a string>";
  }
  return it->second.string_value();
}

// Expects PrepareRequest to reject `r` with INVALID_ARGUMENT and a message
// that starts by naming `field`.
void ExpectInvalid(v1::PublishRequest r, absl::string_view field,
                   absl::string_view also_mentions = "") {
  absl::Status s = PrepareRequest(r, kDefaultSource, TestNow());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), StartsWith(absl::StrCat(field, ": ")));
  if (!also_mentions.empty()) {
    EXPECT_THAT(std::string(s.message()), HasSubstr(also_mentions));
  }
}

// ---------------------------------------------------------------------------
// PrepareRequest

TEST(PrepareRequestTest, FillsInDefaults) {
  v1::PublishRequest r = MinimalRequest();
  ASSERT_TRUE(PrepareRequest(r, kDefaultSource, TestNow()).ok());
  const v1::Event& e = r.event();
  EXPECT_TRUE(IsUuidV4(e.id())) << e.id();
  EXPECT_EQ(e.source(), kDefaultSource);
  EXPECT_EQ(e.spec_version(), "1.0");
  ASSERT_TRUE(e.has_time());
  EXPECT_EQ(e.time().seconds(), kTestNowSeconds);
  EXPECT_EQ(e.time().nanos(), 789000000);
  EXPECT_EQ(e.type(), "com.example.order.created");
  EXPECT_EQ(r.topic(), "orders");
  // Optional attributes stay unset.
  EXPECT_EQ(e.subject(), "");
  EXPECT_EQ(e.data_content_type(), "");
  EXPECT_EQ(e.data_schema(), "");
  EXPECT_TRUE(e.extensions().empty());
}

TEST(PrepareRequestTest, GeneratesADifferentIdPerEvent) {
  v1::PublishRequest a = Prepared(MinimalRequest());
  v1::PublishRequest b = Prepared(MinimalRequest());
  EXPECT_NE(a.event().id(), b.event().id());
}

TEST(PrepareRequestTest, KeepsValuesTheCallerSet) {
  const v1::PublishRequest original = FullRequest();
  v1::PublishRequest r = original;
  ASSERT_TRUE(PrepareRequest(r, kDefaultSource, TestNow() + absl::Hours(5))
                  .ok());
  EXPECT_TRUE(MessageDifferencer::Equals(r, original))
      << "before: " << original.DebugString()
      << "after: " << r.DebugString();
}

TEST(PrepareRequestTest, KeepsCallerTimeOfEpoch) {
  // A time explicitly set to the Unix epoch is set, not "missing".
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->mutable_time();
  ASSERT_TRUE(PrepareRequest(r, kDefaultSource, TestNow()).ok());
  EXPECT_EQ(r.event().time().seconds(), 0);
  EXPECT_EQ(r.event().time().nanos(), 0);
}

TEST(PrepareRequestTest, AcceptsEveryValidTopicCharacter) {
  v1::PublishRequest r = MinimalRequest();
  r.set_topic("Orders_v1.eu-1");
  EXPECT_TRUE(PrepareRequest(r, kDefaultSource, TestNow()).ok());
  r.set_topic("...");
  EXPECT_TRUE(PrepareRequest(r, kDefaultSource, TestNow()).ok());
}

TEST(PrepareRequestTest, AcceptsTopicOf249Characters) {
  v1::PublishRequest r = MinimalRequest();
  r.set_topic(std::string(249, 't'));
  absl::Status s = PrepareRequest(r, kDefaultSource, TestNow());
  EXPECT_TRUE(s.ok()) << s;
}

TEST(PrepareRequestTest, RejectsBadTopics) {
  for (const std::string& topic :
       {std::string(""), std::string("."), std::string(".."),
        std::string("a b"), std::string("\xc3\xbc"), std::string("orders/eu"),
        std::string(250, 't')}) {
    SCOPED_TRACE(absl::StrCat("topic \"", absl::CHexEscape(topic), "\""));
    v1::PublishRequest r = MinimalRequest();
    r.set_topic(topic);
    ExpectInvalid(r, "topic");
  }
}

TEST(PrepareRequestTest, TooLongTopicMessageSaysTheMaximum) {
  v1::PublishRequest r = MinimalRequest();
  r.set_topic(std::string(250, 't'));
  ExpectInvalid(r, "topic", "249");
}

TEST(PrepareRequestTest, RejectsMissingEvent) {
  v1::PublishRequest r;
  r.set_topic("orders");
  ExpectInvalid(r, "event", "required");
  EXPECT_FALSE(r.has_event());
}

TEST(PrepareRequestTest, RejectsMissingType) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->clear_type();
  ExpectInvalid(r, "event.type", "required");
}

TEST(PrepareRequestTest, RejectsOtherSpecVersions) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->set_spec_version("0.3");
  ExpectInvalid(r, "event.spec_version", "\"0.3\"");
}

TEST(PrepareRequestTest, RejectsBadExtensionNames) {
  for (const std::string& name :
       {std::string("Tenant"), std::string("my-ext"), std::string("my_ext"),
        std::string(21, 'x'), std::string(""), std::string("id"),
        std::string("time"), std::string("source"), std::string("type"),
        std::string("specversion"), std::string("data")}) {
    SCOPED_TRACE(absl::StrCat("extension \"", name, "\""));
    v1::PublishRequest r = MinimalRequest();
    (*r.mutable_event()->mutable_extensions())[name] = "v";
    ExpectInvalid(r, absl::StrCat("event.extensions[\"", name, "\"]"));
  }
}

TEST(PrepareRequestTest, ReservedExtensionNameMessageSaysWhy) {
  v1::PublishRequest r = MinimalRequest();
  (*r.mutable_event()->mutable_extensions())["id"] = "v";
  ExpectInvalid(r, "event.extensions[\"id\"]", "standard attribute");
}

TEST(PrepareRequestTest, AcceptsExtensionNamesOf1To20LowercaseOrDigits) {
  v1::PublishRequest r = MinimalRequest();
  auto& ext = *r.mutable_event()->mutable_extensions();
  ext["a"] = "1";
  ext[std::string(20, 'z')] = "2";
  ext["traceparent"] = "3";
  ext["v2"] = "4";
  ext["partitionkey"] = "5";
  absl::Status s = PrepareRequest(r, kDefaultSource, TestNow());
  EXPECT_TRUE(s.ok()) << s;
}

TEST(PrepareRequestTest, RejectsBadDataContentType) {
  for (const std::string& ct :
       {std::string("json"), std::string("application/json\n")}) {
    SCOPED_TRACE(absl::CHexEscape(ct));
    v1::PublishRequest r = MinimalRequest();
    r.mutable_event()->set_data_content_type(ct);
    ExpectInvalid(r, "event.data_content_type");
  }
}

TEST(PrepareRequestTest, AcceptsMediaTypeWithParameters) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->set_data_content_type("text/plain; charset=utf-8");
  EXPECT_TRUE(PrepareRequest(r, kDefaultSource, TestNow()).ok());
}

TEST(PrepareRequestTest, RejectsTimeOutOfRange) {
  struct Case {
    int64_t seconds;
    int32_t nanos;
  };
  for (const Case& c : {Case{253402300800, 0},   // 10000-01-01
                        Case{-62135596801, 0},   // before 0001-01-01
                        Case{kTestNowSeconds, -1},
                        Case{kTestNowSeconds, 1000000000}}) {
    SCOPED_TRACE(absl::StrCat(c.seconds, "s ", c.nanos, "ns"));
    v1::PublishRequest r = MinimalRequest();
    r.mutable_event()->mutable_time()->set_seconds(c.seconds);
    r.mutable_event()->mutable_time()->set_nanos(c.nanos);
    ExpectInvalid(r, "event.time", "out of range");
  }
}

TEST(PrepareRequestTest, AcceptsTimeAtTheEdgesOfTheRange) {
  for (int64_t seconds : {int64_t{253402300799}, int64_t{-62135596800}}) {
    v1::PublishRequest r = MinimalRequest();
    r.mutable_event()->mutable_time()->set_seconds(seconds);
    r.mutable_event()->mutable_time()->set_nanos(999999999);
    absl::Status s = PrepareRequest(r, kDefaultSource, TestNow());
    EXPECT_TRUE(s.ok()) << seconds << ": " << s;
  }
}

TEST(PrepareRequestTest, RejectsSourceWithSpaces) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->set_source("//orders/eu 1");
  ExpectInvalid(r, "event.source");
}

TEST(PrepareRequestTest, RejectsControlCharactersInType) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->set_type("com.example\n.created");
  ExpectInvalid(r, "event.type");
}

// ---------------------------------------------------------------------------
// EncodeRecord, binary mode

TEST(EncodeRecordBinaryTest, ValueIsTheDataUnchanged) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  const std::string data("\x00\x01\xff{not json}\n", 14);
  r.mutable_event()->set_data(data);
  kafka::Record record = EncodeOrDie(r, ContentMode::kBinary);
  EXPECT_EQ(record.topic, "orders");
  EXPECT_EQ(record.value, data);
}

TEST(EncodeRecordBinaryTest, KeyIsTheRequestKey) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  r.set_key("order-42");
  (*r.mutable_event()->mutable_extensions())["partitionkey"] = "tenant-7";
  EXPECT_THAT(EncodeOrDie(r, ContentMode::kBinary).key,
              Optional(std::string("order-42")));
}

TEST(EncodeRecordBinaryTest, KeyFallsBackToPartitionKeyExtension) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  (*r.mutable_event()->mutable_extensions())["partitionkey"] = "tenant-7";
  kafka::Record record = EncodeOrDie(r, ContentMode::kBinary);
  EXPECT_THAT(record.key, Optional(std::string("tenant-7")));
  // The extension is still an attribute of the event.
  EXPECT_THAT(HeaderValue(record, "ce_partitionkey"),
              Optional(std::string("tenant-7")));
}

TEST(EncodeRecordBinaryTest, NoKeyWhenNeitherIsSet) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  EXPECT_EQ(EncodeOrDie(r, ContentMode::kBinary).key, std::nullopt);
  (*r.mutable_event()->mutable_extensions())["partitionkey"] = "";
  EXPECT_EQ(EncodeOrDie(r, ContentMode::kBinary).key, std::nullopt);
}

TEST(EncodeRecordBinaryTest, MinimalEventHasExactlyTheRequiredHeaders) {
  v1::PublishRequest r = MinimalRequest();
  r.mutable_event()->set_id("evt-1");
  r = Prepared(r);
  kafka::Record record = EncodeOrDie(r, ContentMode::kBinary);
  EXPECT_THAT(Pairs(record.headers),
              UnorderedElementsAreArray(HeaderPairs{
                  {"ce_specversion", "1.0"},
                  {"ce_id", "evt-1"},
                  {"ce_source", std::string(kDefaultSource)},
                  {"ce_type", "com.example.order.created"},
                  {"ce_time", "2024-05-01T12:34:56.789Z"},
              }));
  EXPECT_EQ(record.value, "");
}

TEST(EncodeRecordBinaryTest, FullEventHasOneHeaderPerAttribute) {
  v1::PublishRequest r = Prepared(FullRequest());
  (*r.mutable_event()->mutable_extensions())["partitionkey"] = "tenant-7";
  kafka::Record record = EncodeOrDie(r, ContentMode::kBinary);
  EXPECT_THAT(Pairs(record.headers),
              UnorderedElementsAreArray(HeaderPairs{
                  {"ce_specversion", "1.0"},
                  {"ce_id", "evt-1"},
                  {"ce_source", "//orders/eu-1"},
                  {"ce_type", "com.example.order.created"},
                  {"ce_time", "2024-05-01T12:34:56.789Z"},
                  {"ce_subject", "orders/42"},
                  {"ce_dataschema", "https://schemas.example.com/order.json"},
                  {"ce_tenant", "acme"},
                  {"ce_traceparent", "00-abc-01"},
                  {"ce_partitionkey", "tenant-7"},
                  {"content-type", "application/json"},
              }));
  EXPECT_EQ(record.value, R"({"order":42})");
  EXPECT_THAT(record.key, Optional(std::string("tenant-7")));
  EXPECT_EQ(record.topic, "orders.eu-1");
}

TEST(EncodeRecordBinaryTest, TimeKeepsSubMillisecondDigits) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->mutable_time()->set_nanos(123456789);
  EXPECT_THAT(HeaderValue(EncodeOrDie(r, ContentMode::kBinary), "ce_time"),
              Optional(std::string("2024-05-01T12:34:56.123456789Z")));
  r.mutable_event()->mutable_time()->set_nanos(0);
  EXPECT_THAT(HeaderValue(EncodeOrDie(r, ContentMode::kBinary), "ce_time"),
              Optional(std::string("2024-05-01T12:34:56Z")));
}

// ---------------------------------------------------------------------------
// EncodeRecord, structured mode

TEST(EncodeRecordStructuredTest, JsonDataIsInline) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.set_key("order-42");
  r.mutable_event()->set_data(R"({"order":42,"items":["a","b"]})");
  kafka::Record record = EncodeOrDie(r, ContentMode::kStructured);

  EXPECT_EQ(record.topic, "orders.eu-1");
  EXPECT_THAT(record.key, Optional(std::string("order-42")));
  ASSERT_EQ(record.headers.size(), 1u);
  EXPECT_EQ(record.headers[0].name, "content-type");
  EXPECT_THAT(record.headers[0].value,
              StartsWith("application/cloudevents+json"));

  google::protobuf::Struct doc = ParseJsonObject(record.value);
  EXPECT_EQ(StringField(doc, "specversion"), "1.0");
  EXPECT_EQ(StringField(doc, "id"), "evt-1");
  EXPECT_EQ(StringField(doc, "source"), "//orders/eu-1");
  EXPECT_EQ(StringField(doc, "type"), "com.example.order.created");
  EXPECT_EQ(StringField(doc, "subject"), "orders/42");
  EXPECT_EQ(StringField(doc, "time"), "2024-05-01T12:34:56.789Z");
  EXPECT_EQ(StringField(doc, "datacontenttype"), "application/json");
  EXPECT_EQ(StringField(doc, "dataschema"),
            "https://schemas.example.com/order.json");
  EXPECT_EQ(StringField(doc, "tenant"), "acme");
  EXPECT_EQ(StringField(doc, "traceparent"), "00-abc-01");
  EXPECT_EQ(doc.fields().count("data_base64"), 0u);
  ASSERT_EQ(doc.fields().count("data"), 1u);
  const google::protobuf::Value& data = doc.fields().at("data");
  ASSERT_EQ(data.kind_case(), google::protobuf::Value::kStructValue);
  EXPECT_EQ(data.struct_value().fields().at("order").number_value(), 42);
  ASSERT_EQ(data.struct_value().fields().at("items").list_value().values_size(),
            2);
  EXPECT_EQ(doc.fields().size(), 11u) << record.value;
}

TEST(EncodeRecordStructuredTest, TextDataIsAJsonString) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data_content_type("text/plain; charset=utf-8");
  r.mutable_event()->set_data("h\xc3\xa9llo \"world\"\n\tend");
  kafka::Record record = EncodeOrDie(r, ContentMode::kStructured);
  google::protobuf::Struct doc = ParseJsonObject(record.value);
  EXPECT_EQ(StringField(doc, "data"), "h\xc3\xa9llo \"world\"\n\tend");
  EXPECT_EQ(doc.fields().count("data_base64"), 0u);
  EXPECT_EQ(StringField(doc, "datacontenttype"), "text/plain; charset=utf-8");
}

TEST(EncodeRecordStructuredTest, BinaryDataIsBase64) {
  v1::PublishRequest r = Prepared(FullRequest());
  const std::string data("\x00\x01\xfe\xff", 4);
  r.mutable_event()->set_data_content_type("application/octet-stream");
  r.mutable_event()->set_data(data);
  google::protobuf::Struct doc =
      ParseJsonObject(EncodeOrDie(r, ContentMode::kStructured).value);
  EXPECT_EQ(StringField(doc, "data_base64"), absl::Base64Escape(data));
  EXPECT_EQ(doc.fields().count("data"), 0u);
}

TEST(EncodeRecordStructuredTest, InvalidJsonDataIsBase64) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data("{not json");
  kafka::Record record = EncodeOrDie(r, ContentMode::kStructured);
  google::protobuf::Struct doc = ParseJsonObject(record.value);
  EXPECT_EQ(StringField(doc, "data_base64"), absl::Base64Escape("{not json"));
  EXPECT_EQ(doc.fields().count("data"), 0u);
}

// The structured value must be JSON (RFC 8259) for any consumer, not only
// for protobuf's lenient parser: data that is JSON only to that parser
// (single quotes, unquoted keys) must not be inlined.
TEST(EncodeRecordStructuredTest, LenientJsonDataIsNotInlined) {
  for (const std::string& data :
       {std::string("{'order':42}"), std::string("{order:42}")}) {
    SCOPED_TRACE(data);
    v1::PublishRequest r = Prepared(FullRequest());
    r.mutable_event()->set_data(data);
    kafka::Record record = EncodeOrDie(r, ContentMode::kStructured);
    EXPECT_THAT(record.value, Not(HasSubstr(data)));
    google::protobuf::Struct doc = ParseJsonObject(record.value);
    EXPECT_EQ(StringField(doc, "data_base64"), absl::Base64Escape(data));
  }
}

// Text that is not valid UTF-8 (overlong forms, UTF-16 surrogates, code
// points past U+10FFFF) cannot be a JSON string; it goes out as base64.
TEST(EncodeRecordStructuredTest, TextThatIsNotUtf8IsBase64) {
  for (const std::string& data :
       {std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
        std::string("\xf5\x80\x80\x80"), std::string("abc\xff")}) {
    SCOPED_TRACE(absl::CHexEscape(data));
    v1::PublishRequest r = Prepared(FullRequest());
    r.mutable_event()->set_data_content_type("text/plain");
    r.mutable_event()->set_data(data);
    google::protobuf::Struct doc =
        ParseJsonObject(EncodeOrDie(r, ContentMode::kStructured).value);
    EXPECT_EQ(StringField(doc, "data_base64"), absl::Base64Escape(data));
    EXPECT_EQ(doc.fields().count("data"), 0u);
  }
}

TEST(EncodeRecordStructuredTest, NoDataMeansNoDataMember) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  google::protobuf::Struct doc =
      ParseJsonObject(EncodeOrDie(r, ContentMode::kStructured).value);
  EXPECT_EQ(doc.fields().count("data"), 0u);
  EXPECT_EQ(doc.fields().count("data_base64"), 0u);
  EXPECT_EQ(doc.fields().count("subject"), 0u);
  EXPECT_EQ(doc.fields().count("datacontenttype"), 0u);
  EXPECT_EQ(StringField(doc, "source"), kDefaultSource);
  EXPECT_EQ(doc.fields().size(), 5u);
}

TEST(EncodeRecordStructuredTest, EscapesAttributeValues) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_subject("a \"quoted\" \\ subject");
  google::protobuf::Struct doc =
      ParseJsonObject(EncodeOrDie(r, ContentMode::kStructured).value);
  EXPECT_EQ(StringField(doc, "subject"), "a \"quoted\" \\ subject");
}

// ---------------------------------------------------------------------------
// EncodeRecord, size limit

// Bytes of key, value and header names and values for the binary encoding
// of Prepared(FullRequest()) with key "order-42" and `data`, counted here
// from the expected headers.
int64_t ExpectedFullBinaryBytes(const std::string& data) {
  const std::vector<kafka::Header> headers = {
      H("ce_specversion", "1.0"),
      H("ce_id", "evt-1"),
      H("ce_source", "//orders/eu-1"),
      H("ce_type", "com.example.order.created"),
      H("ce_time", "2024-05-01T12:34:56.789Z"),
      H("ce_subject", "orders/42"),
      H("ce_dataschema", "https://schemas.example.com/order.json"),
      H("ce_tenant", "acme"),
      H("ce_traceparent", "00-abc-01"),
      H("content-type", "application/json"),
  };
  int64_t n =
      static_cast<int64_t>(std::string("order-42").size() + data.size());
  for (const kafka::Header& h : headers) n += h.name.size() + h.value.size();
  return n;
}

TEST(EncodeRecordSizeTest, OkAtExactlyTheLimit) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.set_key("order-42");
  r.mutable_event()->set_data(std::string(1000, 'x'));
  const int64_t bytes = ExpectedFullBinaryBytes(r.event().data());
  absl::StatusOr<kafka::Record> record =
      EncodeRecord(r, ContentMode::kBinary, bytes);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(static_cast<int64_t>(record->PayloadBytes()), bytes);
}

TEST(EncodeRecordSizeTest, RejectsOneByteOverTheLimit) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.set_key("order-42");
  r.mutable_event()->set_data(std::string(1000, 'x'));
  const int64_t bytes = ExpectedFullBinaryBytes(r.event().data());
  absl::StatusOr<kafka::Record> record =
      EncodeRecord(r, ContentMode::kBinary, bytes - 1);
  ASSERT_EQ(record.status().code(), absl::StatusCode::kResourceExhausted)
      << record.status();
  const std::string message(record.status().message());
  EXPECT_THAT(message, HasSubstr("limits.max_event_bytes"));
  EXPECT_THAT(message, HasSubstr(absl::StrCat(bytes, " bytes")));
  EXPECT_THAT(message, HasSubstr(absl::StrCat(bytes - 1, " bytes")));
}

TEST(EncodeRecordSizeTest, KeyAndHeadersCountAgainstTheLimit) {
  // Small data, but a key and an extension that make the record too big.
  v1::PublishRequest r = Prepared(MinimalRequest());
  r.mutable_event()->set_data("x");
  absl::StatusOr<kafka::Record> small =
      EncodeRecord(r, ContentMode::kBinary, 1000);
  ASSERT_TRUE(small.ok()) << small.status();
  r.set_key(std::string(600, 'k'));
  (*r.mutable_event()->mutable_extensions())["big"] = std::string(600, 'v');
  EXPECT_EQ(EncodeRecord(r, ContentMode::kBinary, 1000).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(EncodeRecordSizeTest, StructuredValueCountsAgainstTheLimit) {
  v1::PublishRequest r = Prepared(FullRequest());
  kafka::Record record = EncodeOrDie(r, ContentMode::kStructured);
  const int64_t bytes = static_cast<int64_t>(
      record.value.size() + record.headers[0].name.size() +
      record.headers[0].value.size());
  EXPECT_TRUE(EncodeRecord(r, ContentMode::kStructured, bytes).ok());
  absl::Status over =
      EncodeRecord(r, ContentMode::kStructured, bytes - 1).status();
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.message()), HasSubstr("limits.max_event_bytes"));
}

// ---------------------------------------------------------------------------
// DecodeRecord

void ExpectRoundTrip(const v1::PublishRequest& r, ContentMode mode) {
  kafka::Record record = EncodeOrDie(r, mode);
  absl::StatusOr<v1::Event> decoded = DecodeRecord(record);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  std::string diff;
  MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differ.Compare(r.event(), *decoded))
      << diff << "record value: " << record.value;
}

TEST(DecodeRecordTest, BinaryRoundTrip) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->mutable_time()->set_nanos(123456789);
  (*r.mutable_event()->mutable_extensions())["partitionkey"] = "tenant-7";
  ExpectRoundTrip(r, ContentMode::kBinary);
}

TEST(DecodeRecordTest, BinaryRoundTripOfMinimalEventWithBinaryData) {
  v1::PublishRequest r = Prepared(MinimalRequest());
  r.mutable_event()->set_data(std::string("\x00\xff\x10", 3));
  ExpectRoundTrip(r, ContentMode::kBinary);
}

TEST(DecodeRecordTest, StructuredRoundTripWithJsonData) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->mutable_time()->set_nanos(123456789);
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredRoundTripWithTextData) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data_content_type("text/plain");
  r.mutable_event()->set_data("h\xc3\xa9llo \"world\"\n");
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredRoundTripWithBinaryData) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data_content_type("application/octet-stream");
  r.mutable_event()->set_data(std::string("\x00\x01\xfe\xff", 4));
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredRoundTripWithoutData) {
  ExpectRoundTrip(Prepared(MinimalRequest()), ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredRoundTripOfTheFirstYear) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->mutable_time()->set_seconds(-62135596800);
  r.mutable_event()->mutable_time()->set_nanos(1);
  ExpectRoundTrip(r, ContentMode::kStructured);
  ExpectRoundTrip(r, ContentMode::kBinary);
}

TEST(DecodeRecordTest, StructuredJsonDataKeepsEveryDigitOfLargeIntegers) {
  // Above 2^53 a double (google.protobuf.Struct's number) rounds.
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data(
      R"({"id":12345678901234567891,"n":[9007199254740993,-0.1e-400]})");
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredJsonDataNestedDeeperThanProtobufsLimit) {
  // Publish accepts JSON nested up to 512 levels; protobuf's JSON parser
  // stops at 100.
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data(std::string(400, '[') + std::string(400, ']'));
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredJsonStringDataAndEscapedAttributes) {
  v1::PublishRequest r = Prepared(FullRequest());
  r.mutable_event()->set_data(R"("a JSON string \u00e9 \ud83d\ude00")");
  r.mutable_event()->set_subject("quote \" slash \\ \xf0\x9f\x98\x80 end");
  ExpectRoundTrip(r, ContentMode::kStructured);
}

TEST(DecodeRecordTest, StructuredValueFromAnotherProducer) {
  // Whitespace, escapes, members in any order and non-string extensions,
  // as another CloudEvents SDK may write them.
  kafka::Record record;
  record.value =
      " {\n \"data\" : { \"a\" : 1 } ,\"specversion\":\"1.0\", "
      "\"id\":\"e\\u0031\",\"type\":\"t\",\"source\":\"//s\","
      "\"datacontenttype\":\"application/json\",\"count\":42,"
      "\"flag\":true}\n";
  record.headers = {H("content-type", "application/cloudevents+json")};
  absl::StatusOr<v1::Event> decoded = DecodeRecord(record);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->id(), "e1");
  EXPECT_EQ(decoded->data(), R"({ "a" : 1 })");
  EXPECT_EQ(decoded->extensions().at("count"), "42");
  EXPECT_EQ(decoded->extensions().at("flag"), "true");
}

TEST(DecodeRecordTest, StructuredValuesThatAreNotCloudEvents) {
  for (const std::string value : {
           std::string(R"([1,2])"),  // not an object
           std::string(R"({"specversion":"1.0","data":1,"data_base64":"AA=="})"),
           std::string(R"({"specversion":"1.0","data_base64":"not base64!"})"),
           std::string(R"({"specversion":"1.0","data_base64":12})"),
           std::string(R"({"specversion":"1.0","subject":"\ud800"})"),
           std::string(R"({"specversion":"1.0",})"),
           std::string(R"({'specversion':'1.0'})"),
       }) {
    kafka::Record record;
    record.value = value;
    record.headers = {H("content-type", "application/cloudevents+json")};
    absl::Status s = DecodeRecord(record).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << value;
    EXPECT_THAT(std::string(s.message()), HasSubstr("not a CloudEvent"))
        << value;
  }
}

TEST(DecodeRecordTest, RecordWithoutSpecVersionIsNotACloudEvent) {
  kafka::Record record;
  record.topic = "orders";
  record.value = "payload";
  record.headers = {H("ce_id", "evt-1"), H("ce_type", "t"),
                    H("content-type", "text/plain")};
  absl::StatusOr<v1::Event> decoded = DecodeRecord(record);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("not a CloudEvent"));
}

TEST(DecodeRecordTest, PlainRecordIsNotACloudEvent) {
  kafka::Record record;
  record.topic = "orders";
  record.value = "payload";
  absl::StatusOr<v1::Event> decoded = DecodeRecord(record);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("not a CloudEvent"));
}

TEST(DecodeRecordTest, StructuredWithoutSpecVersionIsNotACloudEvent) {
  kafka::Record record;
  record.value = R"({"id":"evt-1","type":"t","source":"//s"})";
  record.headers = {H("content-type", "application/cloudevents+json")};
  absl::StatusOr<v1::Event> decoded = DecodeRecord(record);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("not a CloudEvent"));
}

TEST(DecodeRecordTest, StructuredValueThatIsNotJsonIsNotACloudEvent) {
  kafka::Record record;
  record.value = "not json";
  record.headers = {H("content-type", "application/cloudevents+json")};
  EXPECT_EQ(DecodeRecord(record).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DecodeRecordTest, BadTimeHeaderIsRejected) {
  kafka::Record record;
  record.headers = {H("ce_specversion", "1.0"), H("ce_id", "evt-1"),
                    H("ce_time", "yesterday")};
  absl::Status s = DecodeRecord(record).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("yesterday"));
}

// ---------------------------------------------------------------------------
// NewUuid, FormatRfc3339

TEST(NewUuidTest, IsVersion4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewUuid();
    ASSERT_TRUE(IsUuidV4(id)) << id;
    ASSERT_TRUE(seen.insert(id).second) << "repeated " << id;
  }
}

TEST(FormatRfc3339Test, FormatsUtcWithTheNeededFraction) {
  EXPECT_EQ(FormatRfc3339(TestNow()), "2024-05-01T12:34:56.789Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(kTestNowSeconds)),
            "2024-05-01T12:34:56Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(kTestNowSeconds) +
                          absl::Nanoseconds(1)),
            "2024-05-01T12:34:56.000000001Z");
  EXPECT_EQ(FormatRfc3339(absl::UnixEpoch()), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(-1)), "1969-12-31T23:59:59Z");
}

TEST(FormatRfc3339Test, AgreesWithAbslFormatTimeAcrossTheRange) {
  // The hand-written fast path against the general formatter: every
  // fraction length, leap days, the edges of the fast range and outside it.
  std::vector<absl::Time> times = {
      absl::UnixEpoch(),
      absl::FromUnixSeconds(951782400),                     // 2000-02-29
      absl::FromUnixSeconds(253402300799) + absl::Nanoseconds(999999999),
      absl::FromUnixSeconds(253402300800),                  // year 10000
      absl::UnixEpoch() - absl::Nanoseconds(1),             // before 1970
      absl::FromUnixSeconds(-62135596800),                  // year 1
      absl::FromUnixSeconds(4107542400 - 1),                // 2100-02-28T23:59:59
      absl::FromUnixSeconds(4107542400),                    // 2100-03-01 (no leap day)
      absl::FromUnixSeconds(13574563200),                   // 2400-02-29
      absl::FromUnixSeconds(946684800 - 1),                 // 1999-12-31T23:59:59
  };
  uint64_t x = 88172645463325252ull;  // xorshift: fixed, varied times
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Half before 2100, half up to 9999.
    const int64_t seconds =
        static_cast<int64_t>(x % (i % 2 == 0 ? 4102444800ull : 253402300800ull));
    int64_t nanos = static_cast<int64_t>((x >> 20) % 1000000000);
    for (int k = 0; k < i % 10; ++k) nanos -= nanos % 10;  // trailing zeros
    times.push_back(absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos));
  }
  for (absl::Time t : times) {
    EXPECT_EQ(FormatRfc3339(t),
              absl::FormatTime("%E4Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone()))
        << absl::ToUnixNanos(t);
  }
}

TEST(FormatRfc3339Test, YearsBefore1000HaveFourDigits) {
  // RFC 3339 wants four; "1-01-01T00:00:00Z" fails its own parser.
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(-62135596800)),
            "0001-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(absl::FromCivil(
                absl::CivilSecond(999, 12, 31, 23, 59, 59), absl::UTCTimeZone())),
            "0999-12-31T23:59:59Z");
}

TEST(ParseRfc3339Test, AgreesWithAbslParseTime) {
  // The hand-written fast path against the general parser, on what both
  // accept and on what must be refused: every case gives the same answer.
  std::vector<std::string> texts = {
      "2024-05-01T12:34:56Z",
      "2024-05-01t12:34:56z",
      "2024-05-01T12:34:56.789Z",
      "2024-05-01T12:34:56.000000001Z",
      "2024-05-01T12:34:56.123456789+05:30",
      "2024-05-01T00:00:00-23:59",
      "2000-02-29T23:59:59.5Z",
      "1970-01-01T00:00:00Z",
      "1969-12-31T23:59:59Z",
      "0001-01-01T00:00:00Z",
      "9999-12-31T23:59:59.999999999Z",
      "2024-12-31T23:59:60Z",                // a leap second
      "2024-05-01T12:34:56.1234567891Z",     // ten fractional digits
      // Refused by both:
      "",
      "2024-05-01",
      "2024-05-01T12:34:56",                 // no offset
      "2024-05-01 12:34:56Z",
      "2024-13-01T12:34:56Z",
      "2024-00-10T12:34:56Z",
      "2023-02-29T12:34:56Z",
      "2024-04-31T12:34:56Z",
      "2024-05-01T24:00:00Z",
      "2024-05-01T12:60:00Z",
      "2024-05-01T12:34:56.Z",
      "2024-05-01T12:34:56+0530",
      "2024-05-01T12:34:56+24:00",
      "2024-05-01T12:34:56Zjunk",
      "2024-05-01T12:34:56 Z",
      "+024-05-01T12:34:56Z",
      "2024-5-01T12:34:56Z",
      "２０２４-05-01T12:34:56Z",
  };
  uint64_t x = 2463534242ull;  // xorshift: fixed, varied times and offsets
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const absl::Time t =
        absl::FromUnixSeconds(static_cast<int64_t>(x % 4102444800ull)) +
        absl::Nanoseconds(static_cast<int64_t>((x >> 20) % 1000000000));
    const int offset = static_cast<int>((x >> 40) % (24 * 60 * 2)) - 24 * 60;
    texts.push_back(absl::FormatTime(
        i % 3 == 0 ? "%Y-%m-%dT%H:%M:%E*S%Ez" : "%Y-%m-%dT%H:%M:%E*SZ", t,
        i % 3 == 0 ? absl::FixedTimeZone(offset * 60) : absl::UTCTimeZone()));
  }
  for (const std::string& text : texts) {
    absl::Time want, got;
    std::string want_err, got_err;
    const bool ok = absl::ParseTime(absl::RFC3339_full, text, &want, &want_err);
    ASSERT_EQ(ParseRfc3339(text, &got, &got_err), ok) << text;
    if (ok) {
      EXPECT_EQ(got, want) << text;
    } else {
      EXPECT_EQ(got_err, want_err) << text;
    }
  }
}

TEST(EncodeRecordTest, BinaryModeRefusesAStructuredModeContentType) {
  // Read back, such a record would be taken for a structured-mode event
  // whose attributes come from the data.
  for (const char* type : {"application/cloudevents+json",
                           "Application/CloudEvents-Batch+json"}) {
    v1::PublishRequest r = Prepared(FullRequest());
    r.mutable_event()->set_data_content_type(type);
    absl::StatusOr<kafka::Record> record =
        EncodeRecord(r, ContentMode::kBinary, kNoLimit);
    ASSERT_FALSE(record.ok()) << type;
    EXPECT_EQ(record.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(record.status().message(),
                                  "event.data_content_type"))
        << record.status();
    // The same event on a structured-mode topic is fine.
    r = Prepared(FullRequest());
    r.mutable_event()->set_data_content_type(type);
    EXPECT_TRUE(EncodeRecord(r, ContentMode::kStructured, kNoLimit).ok()) << type;
  }
}

TEST(EncodeRecordTest, BinaryModeMovesTheDataOutOfTheRequest) {
  v1::PublishRequest r = Prepared(FullRequest());
  const std::string data(5000, 'd');
  r.mutable_event()->set_data(data);
  absl::StatusOr<kafka::Record> record =
      EncodeRecord(r, ContentMode::kBinary, kNoLimit);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->value, data);
  EXPECT_TRUE(r.event().data().empty());
}

}  // namespace
}  // namespace eventbus::server
