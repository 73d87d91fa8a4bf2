#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kafka/consumer.h"
#include "kafka/delivery_ledger.h"
#include "kafka/producer.h"
#include "kafka/rdkafka_handles.h"

namespace eventbus::kafka {

// One member of a Kafka consumer group, with at-least-once delivery and
// explicit acks: the client of one Subscribe stream. The librdkafka driver
// around a DeliveryLedger, which holds the rules.
//
// A thread polls the consumer, offers records to the ledger while the
// client has room (librdkafka then stops fetching once its bounded queue is
// full), hands the ledger's deliveries to the sink, writes its dead-letter
// events, stores the offsets it allows (committed by librdkafka's
// auto-commit and on revocation) and serves rebalances.
//
// Ack, Nack, DeadLetter and Extend may be called from any thread.
class GroupConsumer final : public Consumer {
 public:
  // Creates the consumer and subscribes. `dead_letters` and `sink` must
  // outlive it. Fails with INVALID_ARGUMENT for a bad property.
  static absl::StatusOr<std::unique_ptr<GroupConsumer>> Start(
      GroupConsumerOptions options, Producer* dead_letters,
      DeliverySink* sink);

  GroupConsumer(const GroupConsumer&) = delete;
  GroupConsumer& operator=(const GroupConsumer&) = delete;
  // Close() unless it was called.
  ~GroupConsumer() override;

  std::vector<AckError> Ack(absl::Span<const uint64_t> ids) override;
  std::vector<AckError> Nack(absl::Span<const uint64_t> ids,
                             std::optional<absl::Duration> delay) override;
  std::vector<AckError> DeadLetter(absl::Span<const uint64_t> ids,
                                   const std::string& reason) override;
  std::vector<AckError> Extend(absl::Span<const uint64_t> ids,
                               absl::Duration deadline) override;

  // What the consumer holds, for tests and monitoring.
  DeliveryLedger::Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t OutstandingDeliveries() const override { return stats().outstanding; }

  // Starts leaving the group without waiting: stops delivering at once; the
  // consumer's thread commits what was acked and closes. Close() then only
  // waits. Safe from any thread; never blocks.
  void Stop() override;

  // Leaves the group: stops delivering, commits what was acked, closes the
  // consumer (so the group rebalances at once) and waits for dead-letter
  // writes in flight. The sink is not called after it returns. Blocks;
  // idempotent.
  void Close() override;

 private:
  GroupConsumer(GroupConsumerOptions options, Producer* dead_letters,
                DeliverySink* sink);
  absl::Status Init();
  void Run();
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* partitions,
                                void* opaque) noexcept;
  static int StatsCallback(rd_kafka_t* rk, char* json, size_t json_len,
                           void* opaque) noexcept;
  void OnAssign(rd_kafka_topic_partition_list_t* partitions);
  void OnRevoke(rd_kafka_topic_partition_list_t* partitions, bool lost);
  void OnMessage(const rd_kafka_message_t* msg);
  // Runs the ledger's clock, then does what it asks: deliveries to the
  // sink, dead-letter writes, offsets to store.
  void Tick();
  void WriteDeadLetters(std::vector<DeliveryLedger::DeadLetterWrite> writes);
  void OnDeadLettered(const DeliveryLedger::DeadLetterWrite& write,
                      absl::Status status);
  void StoreOffsets(
      const std::vector<std::pair<TopicPartition, int64_t>>& offsets);
  int Room() const ABSL_LOCKS_EXCLUDED(mu_);
  void Wake();
  std::string DeadLetterTopic(absl::string_view topic) const;
  absl::Time Now() const { return options_.clock->Now(); }

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
  DeliveryLedger ledger_ ABSL_GUARDED_BY(mu_);
  // Dead-letter writes handed to the producer and not yet answered: Close
  // waits for them (their callbacks reference this object).
  int dead_letters_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace eventbus::kafka
