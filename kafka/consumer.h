#pragma once

// A member of a Kafka consumer group as a Subscribe stream sees it, without
// librdkafka: the records it reads, the deliveries it hands out, its options
// and the Consumer interface that GroupConsumer implements (and tests fake).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "kafka/rdkafka_stats.h"
#include "kafka/record.h"

namespace eventbus::kafka {

// A record read from Kafka. Its header list and bytes (topic, key, value,
// header names and values) are copied into one block it owns, which the
// views point into: one allocation per record instead of one per field.
// (Keeping librdkafka's message instead would pin the whole fetch response
// it came in while the delivery is outstanding.) Movable, not copyable.
struct InboundRecord {
  static InboundRecord Make(absl::string_view topic, int32_t partition,
                            int64_t offset, std::optional<absl::string_view> key,
                            std::optional<absl::string_view> value,
                            absl::Span<const HeaderView> headers,
                            int64_t timestamp_ms);

  absl::string_view topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::optional<absl::string_view> key;
  std::optional<absl::string_view> value;
  absl::Span<const HeaderView> headers;
  int64_t timestamp_ms = -1;

  // Bytes of key, value and headers: what counts against flow control.
  size_t Bytes() const { return bytes_; }

 private:
  std::unique_ptr<char[]> storage_;
  size_t bytes_ = 0;
};

// Why an event is delivered again.
enum class RedeliveryReason { kNack, kDeadline };

// What a consumer tells about its events, for metrics. Called on the
// consumer's own schedule (with its lock held): must be fast, must not block
// and must not call back into the consumer.
class ConsumerObserver {
 public:
  virtual ~ConsumerObserver() = default;
  // Sent to the client (`attempt` 1: for the first time) at `now`.
  virtual void Delivered(const InboundRecord& record, int attempt,
                         absl::Time now) = 0;
  // Acknowledged by the client `since_delivery` after it was sent.
  virtual void Acked(const InboundRecord& record,
                     absl::Duration since_delivery) = 0;
  virtual void Nacked(const InboundRecord& record) = 0;
  // To be delivered again.
  virtual void Redelivering(const InboundRecord& record,
                            RedeliveryReason reason) = 0;
  // Written to the dead-letter topic.
  virtual void DeadLettered(const InboundRecord& record) = 0;
  // The lag of the partitions this member fetches, from librdkafka's
  // statistics (every statistics.interval.ms of the consumer properties),
  // on the consumer's thread. A partition missing from `lags` is no longer
  // this member's (or its lag is not known yet).
  virtual void PartitionLags(const std::vector<PartitionLag>& lags) {}
};

enum class StartPosition { kLatest, kEarliest, kTime };
enum class Ordering { kUnordered, kPerKey, kPerPartition };

struct GroupConsumerOptions {
  // librdkafka consumer properties (bootstrap.servers, client.id, user
  // overrides). eventbus's own settings (group.id, offset storage, assignor)
  // are added by GroupConsumer; the ones given here win.
  std::map<std::string, std::string> properties;
  std::vector<std::string> topics;
  std::string group;
  StartPosition start = StartPosition::kLatest;
  absl::Time start_time;  // with kTime
  int64_t max_outstanding_messages = 1000;
  int64_t max_outstanding_bytes = 16 << 20;
  absl::Duration ack_deadline = absl::Seconds(30);
  int max_delivery_attempts = 5;
  // Dead-letter topic; empty means "<topic><dead_letter_suffix>".
  std::string dead_letter_topic;
  std::string dead_letter_suffix = ".dlq";
  absl::Duration retry_backoff = absl::Seconds(1);
  absl::Duration retry_backoff_max = absl::Seconds(60);
  Ordering ordering = Ordering::kUnordered;
  // Bytes librdkafka may fetch ahead of the client (its
  // queued.max.messages.kbytes, for all partitions of this member): records
  // the client has no room for stay there, and fetching stops while it is
  // full. A kafka.consumer property of that name wins.
  int64_t read_ahead_bytes = 32 << 20;
  // Deadline for writing one event to the dead-letter topic.
  absl::Duration dead_letter_timeout = absl::Seconds(30);
  // Ack deadlines, backoff and leases run on it.
  const common::Clock* clock = common::Clock::Real();
  // Told about every delivery, ack, nack, redelivery and dead letter; may
  // be null. Must outlive the consumer.
  ConsumerObserver* observer = nullptr;

  friend bool operator==(const GroupConsumerOptions&,
                         const GroupConsumerOptions&) = default;
};

// One event handed to the client.
struct Delivery {
  uint64_t id = 0;
  int attempt = 1;
  std::shared_ptr<const InboundRecord> record;
};

struct TopicPartition {
  std::string topic;
  int32_t partition = -1;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

// A TopicPartition that does not own its topic, to look one up without
// copying the name.
struct TopicPartitionRef {
  absl::string_view topic;
  int32_t partition = -1;
};

// Orders TopicPartitions as their operator<=> does, and compares them with
// TopicPartitionRefs.
struct TopicPartitionLess {
  using is_transparent = void;
  static std::pair<absl::string_view, int32_t> View(const TopicPartition& t) {
    return {t.topic, t.partition};
  }
  static std::pair<absl::string_view, int32_t> View(const TopicPartitionRef& t) {
    return {t.topic, t.partition};
  }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return View(a) < View(b);
  }
};

// Where a GroupConsumer sends what happens. Called on the consumer's thread,
// one call at a time; calls must be fast and must not block or call back
// into the GroupConsumer.
class DeliverySink {
 public:
  virtual ~DeliverySink() = default;
  // New deliveries, in order (per partition in offset order).
  virtual void Deliver(std::vector<Delivery> deliveries) = 0;
  // These partitions were taken away in a rebalance: deliveries of them not
  // yet sent to the client should be dropped.
  virtual void Revoked(const std::vector<TopicPartition>& partitions) = 0;
  // The smallest delivery id the client has not been sent yet (queued behind
  // a slow reader), or UINT64_MAX when everything was sent. Their ack
  // deadlines do not run out while they wait.
  virtual uint64_t FirstUnsentId() = 0;
  // The subscription failed for good (for example an authorization error);
  // nothing more will be delivered. Called at most once.
  virtual void Failed(absl::Status status) = 0;
};

// Why an ack, nack or dead-letter request for one delivery was not applied.
struct AckError {
  uint64_t delivery_id = 0;
  absl::Status status;
};

// One member of a consumer group with at-least-once delivery and explicit
// acks, as the Subscribe stream that owns it uses it. Deliveries and
// failures arrive at the DeliverySink given when it started. Every method
// may be called from any thread.
class Consumer {
 public:
  virtual ~Consumer() = default;

  // Marks deliveries processed. Returns the ids it could not apply.
  virtual std::vector<AckError> Ack(absl::Span<const uint64_t> ids) = 0;
  // Redelivers after `delay` (nullopt: the backoff for the attempt), or
  // dead-letters when the event had its last attempt.
  virtual std::vector<AckError> Nack(absl::Span<const uint64_t> ids,
                                     std::optional<absl::Duration> delay) = 0;
  // Writes the events to the dead-letter topic now, with `reason`.
  virtual std::vector<AckError> DeadLetter(absl::Span<const uint64_t> ids,
                                           const std::string& reason) = 0;
  // Sets the ack deadline of outstanding deliveries to now + `deadline`.
  virtual std::vector<AckError> Extend(absl::Span<const uint64_t> ids,
                                       absl::Duration deadline) = 0;
  // Starts leaving the group without waiting: stops delivering at once.
  // Never blocks.
  virtual void Stop() = 0;
  // Deliveries sent and not yet acked, nacked or expired (for metrics).
  virtual int64_t OutstandingDeliveries() const { return 0; }
  // Leaves the group and waits until it has; the sink is not called after
  // it returns. Blocks; idempotent.
  virtual void Close() = 0;
};

}  // namespace eventbus::kafka
