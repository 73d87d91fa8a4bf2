#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "kafka/consumer.h"
#include "kafka/producer.h"
#include "server/sidecar_metrics.h"

namespace eventbus::server {

// Server-wide settings of Subscribe streams: librdkafka consumer properties
// and the defaults and caps of what a Subscription may ask for.
struct SubscribeOptions {
  std::map<std::string, std::string> consumer_properties;
  int64_t default_max_outstanding_messages = 1000;
  int64_t max_outstanding_messages_cap = 100000;
  int64_t default_max_outstanding_bytes = 16 << 20;
  int64_t max_outstanding_bytes_cap = 256 << 20;
  int64_t read_ahead_bytes = 32 << 20;
  // Subscribe streams served at once, at most.
  int64_t max_streams = 1000;
  absl::Duration default_ack_deadline = absl::Seconds(30);
  int default_max_delivery_attempts = 5;
  absl::Duration retry_backoff = absl::Seconds(1);
  absl::Duration retry_backoff_max = absl::Seconds(60);
  std::string dead_letter_suffix = ".dlq";
  // Deadline for one dead-letter write.
  absl::Duration dead_letter_timeout = absl::Seconds(30);

  friend bool operator==(const SubscribeOptions&,
                         const SubscribeOptions&) = default;
};

// Checks a Subscription and turns it into GroupConsumer options. Returns
// INVALID_ARGUMENT naming the field for a bad subscription.
absl::StatusOr<kafka::GroupConsumerOptions> ToGroupConsumerOptions(
    const v1::Subscription& subscription, const SubscribeOptions& options);

// Checks one message of a Subscribe stream against the protocol, apart from
// what only the consumer decides (which delivery ids are outstanding).
// `subscribed` says whether an earlier message of the stream subscribed.
// Returns INVALID_ARGUMENT, which ends the stream, for a second subscription,
// a first message that is not one, an empty request, a nack.retry_delay
// outside 0..24h and a modify_ack_deadline.ack_deadline unset or outside
// 1s..10m. The subscription itself is checked by ToGroupConsumerOptions.
absl::Status CheckSubscribeRequest(const v1::SubscribeRequest& request,
                                   bool subscribed);

// Converts what a GroupConsumer delivers into the API's Delivery: the
// decoded CloudEvent, or the raw record marked `raw`.
v1::Delivery ToProtoDelivery(const kafka::Delivery& delivery);
// The same into `*d` (which may be on an arena), which must be empty.
void FillDelivery(const kafka::Delivery& delivery, v1::Delivery* d);

class SubscribeReactor;

// Starts the consumer-group member of one Subscribe stream, which delivers
// to `sink`.
using ConsumerFactory =
    std::function<absl::StatusOr<std::unique_ptr<kafka::Consumer>>(
        kafka::GroupConsumerOptions options, kafka::DeliverySink* sink)>;

// The Subscribe streams of one server: opens them, drains them at shutdown,
// and closes their Kafka consumers on a thread of its own, so that leaving
// the consumer group never blocks a gRPC thread.
class Subscriptions {
 public:
  // Streams of kafka::GroupConsumers, which write dead letters to
  // `dead_letters`; it must outlive this object.
  // `metrics`, when set, observes every stream; it must outlive this object.
  Subscriptions(kafka::Producer* dead_letters, SubscribeOptions options,
                SubscribeMetrics* metrics = nullptr);
  // Streams of the consumers `start_consumer` starts (tests: fakes).
  Subscriptions(ConsumerFactory start_consumer, SubscribeOptions options,
                SubscribeMetrics* metrics = nullptr);
  // Waits until every consumer is closed.
  ~Subscriptions();

  // The stream's reactor. Subscribe is served raw (Protobuf's wire format
  // in gRPC byte buffers): the reactor parses requests and encodes
  // responses itself.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Open(
      grpc::CallbackServerContext* context) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every open stream with UNAVAILABLE (their consumers leave the
  // group, so unacked events go to the other members); streams opened later
  // end the same way.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until every stream is done and its consumer closed, or until
  // `deadline`. Returns true when all are.
  bool WaitClosed(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Deliveries outstanding per consumer group (its metrics label), over the
  // open streams.
  std::map<std::string, int64_t> OutstandingByGroup() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class SubscribeReactor;
  // Called from the stream's OnDone: forgets the stream, and on the closer
  // thread waits for its consumer (already stopping) to close, then deletes
  // the stream. `consumer` may be null.
  void Done(SubscribeReactor* stream, std::unique_ptr<kafka::Consumer> consumer)
      ABSL_LOCKS_EXCLUDED(mu_);
  void CloserLoop();

  const ConsumerFactory start_consumer_;
  const SubscribeOptions options_;
  SubscribeMetrics* const metrics_;

  absl::Mutex mu_;
  std::set<SubscribeReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::pair<std::unique_ptr<kafka::Consumer>, std::function<void()>>>
      to_close_ ABSL_GUARDED_BY(mu_);
  int closing_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread closer_;
};

}  // namespace eventbus::server
