#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kafka/offset_tracker.h"
#include "kafka/producer.h"
#include "kafka/rdkafka_handles.h"
#include "kafka/record.h"

namespace eventbus::kafka {

// A record read from Kafka. Its bytes (topic, key, value, header names and
// values) are copied into one block it owns, which the views point into:
// one allocation per record instead of one per field. Movable, not
// copyable.
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
  std::vector<HeaderView> headers;
  int64_t timestamp_ms = -1;

  // Bytes of key, value and headers: what counts against flow control.
  size_t Bytes() const;

 private:
  std::unique_ptr<char[]> storage_;
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

// One member of a Kafka consumer group, with at-least-once delivery and
// explicit acks: the client of one Subscribe stream.
//
// A thread polls the consumer, hands records to the sink as deliveries,
// redelivers what was nacked or not acked in time (with backoff), writes
// events to the dead-letter topic after their last attempt, takes no more
// records from librdkafka while the client holds its limit (librdkafka then
// stops fetching once its bounded queue is full) and commits only offsets
// whose deliveries, and all before them, were acked.
//
// Ack, Nack, DeadLetter and Extend may be called from any thread.
class GroupConsumer {
 public:
  // Creates the consumer and subscribes. `dead_letters` and `sink` must
  // outlive it. Fails with INVALID_ARGUMENT for a bad property.
  static absl::StatusOr<std::unique_ptr<GroupConsumer>> Start(
      GroupConsumerOptions options, Producer* dead_letters,
      DeliverySink* sink);

  GroupConsumer(const GroupConsumer&) = delete;
  GroupConsumer& operator=(const GroupConsumer&) = delete;
  // Close() unless it was called.
  ~GroupConsumer();

  // Marks deliveries processed. Returns the ids it could not apply.
  std::vector<AckError> Ack(absl::Span<const uint64_t> ids);
  // Redelivers after `delay` (nullopt: the backoff for the attempt), or
  // dead-letters when the event had its last attempt.
  std::vector<AckError> Nack(absl::Span<const uint64_t> ids,
                             std::optional<absl::Duration> delay);
  // Writes the events to the dead-letter topic now, with `reason`.
  std::vector<AckError> DeadLetter(absl::Span<const uint64_t> ids,
                                   const std::string& reason);
  // Sets the ack deadline of outstanding deliveries to now + `deadline`.
  std::vector<AckError> Extend(absl::Span<const uint64_t> ids,
                               absl::Duration deadline);

  // What the consumer holds and has done, for tests and monitoring.
  struct Stats {
    int64_t in_progress_messages = 0;  // read and not finished
    int64_t in_progress_bytes = 0;
    int64_t waiting = 0;  // taken from librdkafka past the limits
  };
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // Starts leaving the group without waiting: stops delivering at once; the
  // consumer's thread commits what was acked and closes. Close() then only
  // waits. Safe from any thread; never blocks.
  void Stop();

  // Leaves the group: stops delivering, commits what was acked, closes the
  // consumer (so the group rebalances at once) and waits for dead-letter
  // writes in flight. The sink is not called after it returns. Blocks;
  // idempotent.
  void Close();

 private:
  struct Outstanding {
    std::shared_ptr<const InboundRecord> record;
    int attempt = 1;
    absl::Time deadline;
  };
  struct Redelivery {
    absl::Time due;
    std::shared_ptr<const InboundRecord> record;
    // The attempt of the coming delivery; negative: a dead-letter write to
    // retry, after -attempt attempts.
    int attempt = 1;
  };
  struct PartitionState {
    PartitionAckTracker tracker;
    // Ordered modes: records waiting for their key (or the partition) to be
    // free, and how many of each key are in progress.
    std::map<std::string, std::deque<std::shared_ptr<const InboundRecord>>>
        held;
    std::map<std::string, int> busy;
    std::optional<int64_t> stored;  // last offset handed to offsets_store
    uint64_t generation = 0;        // which assignment this state belongs to
  };

  GroupConsumer(GroupConsumerOptions options, Producer* dead_letters,
                DeliverySink* sink);
  absl::Status Init();
  void Run();
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* partitions,
                                void* opaque) noexcept;
  void OnAssign(rd_kafka_topic_partition_list_t* partitions);
  void OnRevoke(rd_kafka_topic_partition_list_t* partitions, bool lost);
  void OnMessage(const rd_kafka_message_t* msg);
  void Tick(absl::Time now);
  void FlushDeliveries();
  void StoreOffsets() ABSL_LOCKS_EXCLUDED(mu_);
  // Records the client has room for now (0 at a limit): under the message
  // limit, and under the byte limit at the size of the records in progress.
  int Room() const ABSL_LOCKS_EXCLUDED(mu_);
  void Wake();

  // The key that orders `record` under the ordering mode.
  std::string OrderKey(const InboundRecord& record) const;
  // Sends `record` now, or holds it until its key is free.
  void Admit(std::shared_ptr<const InboundRecord> record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Send(std::shared_ptr<const InboundRecord> record, int attempt,
            absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The event is done (acked or dead-lettered): the offset may be
  // committed, flow control released, and the next held record of its key
  // sent.
  void Finish(const InboundRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedules another attempt, or the dead-letter topic after the last.
  void Retry(std::shared_ptr<const InboundRecord> record, int attempt,
             std::optional<absl::Duration> delay, const std::string& why,
             absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendToDeadLetters(std::shared_ptr<const InboundRecord> record,
                         int attempts, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDeadLettered(std::shared_ptr<const InboundRecord> record, int attempts,
                      std::string reason, uint64_t generation,
                      absl::Status status);
  // Flow-control counters without `record`.
  void Release(const InboundRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LookUp(uint64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls `fn` with the outstanding_ iterator of each of `ids`; returns why
  // the others have none.
  template <typename Fn>
  std::vector<AckError> ForEachOutstanding(absl::Span<const uint64_t> ids,
                                           Fn fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes each of `ids` from the outstanding deliveries and hands it to
  // `fn`; returns why the others could not be.
  template <typename Fn>
  std::vector<AckError> Take(absl::Span<const uint64_t> ids, Fn fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration Backoff(int attempt) const;
  std::string DeadLetterTopic(absl::string_view topic) const;
  bool OverLimit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers waiting records while the limits allow.
  void AdmitWaiting() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const GroupConsumerOptions options_;
  Producer* const dead_letters_;
  DeliverySink* const sink_;
  RdKafkaPtr rk_;
  // Guards the queues and closing_ against Wake() from other threads.
  absl::Mutex wake_mu_;
  // The consumer queue: rebalances and errors (served by every round).
  RdKafkaQueuePtr queue_ ABSL_GUARDED_BY(wake_mu_);
  // Every assigned partition's records, forwarded here at assignment so that
  // they are taken only when the client has room, while the consumer queue
  // is still served.
  RdKafkaQueuePtr records_ ABSL_GUARDED_BY(wake_mu_);
  // records_.get(), for the consumer's thread without the lock (set before
  // it starts, cleared after it ends).
  rd_kafka_queue_t* records_queue_ = nullptr;
  bool closing_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool closed_ = false;  // touched by Close only
  bool cooperative_ = true;  // the assignor's protocol, set by Init

  mutable absl::Mutex mu_;
  std::map<TopicPartition, PartitionState, TopicPartitionLess> partitions_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Outstanding> outstanding_ ABSL_GUARDED_BY(mu_);
  // Ids no longer outstanding because their partition was revoked or they
  // were redelivered; remembered to answer late acks clearly.
  absl::flat_hash_map<uint64_t, std::string> gone_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> gone_order_ ABSL_GUARDED_BY(mu_);
  std::vector<Redelivery> retries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Time next_deadline_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<Delivery> to_send_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Events read and not finished: sent, held, waiting for a retry or for the
  // dead-letter topic.
  int64_t in_progress_messages_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_progress_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Records taken from librdkafka past the limits (at most one round's), in
  // order, not yet delivered.
  std::deque<std::shared_ptr<const InboundRecord>> waiting_ ABSL_GUARDED_BY(mu_);
  int dead_letters_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Dead-letter writes failed in a row; sets their retry backoff.
  int dead_letter_failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace eventbus::kafka
