// Fuzz target: the checks a Subscribe stream applies to the messages a
// client sends, in order, as SubscribeReactor::Handle does: every message
// goes through CheckSubscribeRequest, and the subscription through
// ToGroupConsumerOptions. The first refused message ends the stream, as it
// does on the server. What the GroupConsumer then does with acks, nacks,
// dead letters and deadline extensions needs a consumer (and Kafka), so it
// is not reached here.
//
// The input is a sequence of serialized eventbus.v1.SubscribeRequest
// messages, each preceded by its length as a varint (protobuf's delimited
// form). A message that does not parse ends the stream (gRPC ends it so);
// a truncated last message and messages past kMaxMessages are ignored.

#include <google/protobuf/io/coded_stream.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/consumer.h"
#include "server/event_codec.h"
#include "server/subscribe_reactor.h"
#include "tests/fuzz/fuzz_check.h"

namespace eventbus {
namespace {

constexpr int kMaxMessages = 64;

// What ToGroupConsumerOptions promises the GroupConsumer.
void CheckOptions(const kafka::GroupConsumerOptions& o,
                  const server::SubscribeOptions& server) {
  FUZZ_CHECK(!o.topics.empty());
  for (const std::string& topic : o.topics) {
    FUZZ_CHECK(server::ValidateTopicName(topic).ok());
  }
  FUZZ_CHECK(!o.group.empty());
  FUZZ_CHECK(o.max_outstanding_messages >= 1 &&
             o.max_outstanding_messages <= server.max_outstanding_messages_cap);
  FUZZ_CHECK(o.max_outstanding_bytes >= 1 &&
             o.max_outstanding_bytes <= server.max_outstanding_bytes_cap);
  FUZZ_CHECK(o.ack_deadline == server.default_ack_deadline ||
             (o.ack_deadline >= absl::Seconds(1) &&
              o.ack_deadline <= absl::Minutes(10)));
  FUZZ_CHECK(o.max_delivery_attempts >= 1 && o.max_delivery_attempts <= 1000);
  FUZZ_CHECK(o.dead_letter_topic.empty() ||
             server::ValidateTopicName(o.dead_letter_topic).ok());
}

}  // namespace
}  // namespace eventbus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace eventbus;
  if (size > INT_MAX) return 0;
  static const server::SubscribeOptions* const options =
      new server::SubscribeOptions;
  google::protobuf::io::CodedInputStream in(data, static_cast<int>(size));
  bool subscribed = false;
  for (int i = 0; i < kMaxMessages; ++i) {
    uint32_t length;
    std::string bytes;
    if (!in.ReadVarint32(&length) || length > INT_MAX ||
        !in.ReadString(&bytes, static_cast<int>(length))) {
      break;
    }
    v1::SubscribeRequest request;
    if (!request.ParseFromString(bytes)) break;
    const absl::Status status =
        server::CheckSubscribeRequest(request, subscribed);
    FUZZ_LOG("  %s: %s\n", request.ShortDebugString().c_str(),
             status.ToString().c_str());
    if (!status.ok()) {
      FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument);
      break;
    }
    if (request.request_case() != v1::SubscribeRequest::kSubscription) {
      continue;
    }
    const absl::StatusOr<kafka::GroupConsumerOptions> consumer =
        server::ToGroupConsumerOptions(request.subscription(), *options);
    FUZZ_LOG("  subscription: %s\n", consumer.status().ToString().c_str());
    if (!consumer.ok()) {
      FUZZ_CHECK(consumer.status().code() ==
                 absl::StatusCode::kInvalidArgument);
      break;
    }
    eventbus::CheckOptions(*consumer, *options);
    subscribed = true;
  }
  return 0;
}
