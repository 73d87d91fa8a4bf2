// Fuzz target: the validation and encoding a publish runs before the record
// goes to the producer (EventBusService::Encode): PrepareRequest, then
// EncodeRecord in structured and in binary mode.
//
// The input is a serialized eventbus.v1.PublishRequest. Input that does not
// parse is skipped: gRPC refuses such a message before the service sees it.

#include <climits>
#include <cstddef>
#include <cstdint>

#include <google/protobuf/util/message_differencer.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "common/json_text.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/record.h"
#include "server/event_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace eventbus {
namespace {

// limits.max_event_bytes' default.
constexpr int64_t kMaxEventBytes = 1000000;

// Encodes `request` (a prepared request, left as EncodeRecord leaves it) and
// checks what EncodeRecord promises: among it, that a consumer decodes the
// record back into the event that was published.
void Encode(v1::PublishRequest& request, server::ContentMode mode) {
  const v1::Event published = request.event();
  const std::string topic = request.topic();
  absl::StatusOr<kafka::Record> record =
      server::EncodeRecord(request, mode, kMaxEventBytes);
  FUZZ_LOG("  %s: %s\n",
           mode == server::ContentMode::kBinary ? "binary" : "structured",
           record.ok() ? "OK" : record.status().ToString().c_str());
  if (!record.ok()) {
    // Structured mode refuses only for the size; binary mode also for a
    // data_content_type that would read back as a structured event.
    FUZZ_CHECK(record.status().code() == absl::StatusCode::kResourceExhausted ||
               (mode == server::ContentMode::kBinary &&
                record.status().code() == absl::StatusCode::kInvalidArgument));
    return;
  }
  FUZZ_CHECK(record->topic == topic);
  FUZZ_CHECK(static_cast<int64_t>(record->PayloadBytes()) <= kMaxEventBytes);

  absl::StatusOr<v1::Event> decoded = server::DecodeRecord(*record);
  FUZZ_LOG("  decode: %s\n", decoded.status().ToString().c_str());
  FUZZ_CHECK(decoded.ok());
  v1::Event expected = published;
  expected.DiscardUnknownFields();  // a record carries none
  if (mode == server::ContentMode::kStructured &&
      common::IsStrictJson(expected.data()) &&
      server::IsJsonContentType(expected.data_content_type())) {
    // Inlined JSON loses the whitespace around it, nothing else.
    expected.set_data(std::string(absl::StripAsciiWhitespace(expected.data())));
  }
  const bool same =
      google::protobuf::util::MessageDifferencer::Equals(*decoded, expected);
  if (!same) {
    FUZZ_LOG("  published:\n%s  decoded:\n%s", expected.DebugString().c_str(),
             decoded->DebugString().c_str());
  }
  FUZZ_CHECK(same);
}

}  // namespace
}  // namespace eventbus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace eventbus;
  if (size > INT_MAX) return 0;
  v1::PublishRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;

  const absl::Time now =
      absl::FromUnixSeconds(1714566896) + absl::Milliseconds(789);
  const absl::Status prepared =
      server::PrepareRequest(request, "//eventbus/fuzz", now);
  FUZZ_LOG("  prepare: %s\n", prepared.ToString().c_str());
  if (!prepared.ok()) {
    FUZZ_CHECK(prepared.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(!request.event().id().empty());
  FUZZ_CHECK(!request.event().source().empty());
  FUZZ_CHECK(request.event().spec_version() == "1.0");
  FUZZ_CHECK(request.event().has_time());

  // Binary mode moves the data out of the request: structured mode first,
  // on a copy.
  v1::PublishRequest structured = request;
  Encode(structured, server::ContentMode::kStructured);
  Encode(request, server::ContentMode::kBinary);
  return 0;
}
