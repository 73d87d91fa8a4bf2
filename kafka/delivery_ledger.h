#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kafka/consumer.h"
#include "kafka/offset_tracker.h"

namespace eventbus::kafka {

// The at-least-once bookkeeping of one consumer-group member, as plain code:
// no threads, no librdkafka, and time only as the `now` each call is given.
// GroupConsumer drives it (records in, deliveries and dead-letter writes and
// offsets out); tests drive it directly.
//
// Every record read from an assigned partition is in exactly one state:
//   waiting      read while the client is at its limits; not counted
//   held         ordered modes: behind an earlier event of its key
//   outstanding  delivered under an id, until ack, nack, dead-letter or its
//                deadline
//   scheduled    a redelivery (or a dead-letter write to retry) due later
//   dead-letter  a write to the dead-letter topic queued or in flight
// Every state but waiting counts against the flow-control limits; a record
// leaves the count in one place (Release), when it is done (acked or
// dead-lettered: its offset may be committed) or dropped (its partition was
// revoked).
//
// Not thread-safe: the owner serializes calls.
class DeliveryLedger {
 public:
  explicit DeliveryLedger(const GroupConsumerOptions& options);
  DeliveryLedger(const DeliveryLedger&) = delete;
  DeliveryLedger& operator=(const DeliveryLedger&) = delete;

  // --- Partitions -------------------------------------------------------

  // The partition is now this member's, from a fresh start.
  void Assign(const TopicPartition& partition);

  // What a revocation leaves to do.
  struct Revocation {
    // The partitions that were assigned.
    std::vector<TopicPartition> partitions;
    // Offsets to commit now (unless the partitions were lost).
    std::vector<std::pair<TopicPartition, int64_t>> commit;
  };
  // The partitions are no longer this member's: their events leave the
  // ledger (a dead-letter write in flight finishes on its own and no longer
  // counts), their ids answer late acks with why.
  Revocation Revoke(absl::Span<const TopicPartition> partitions, bool lost);

  // --- Records from Kafka ------------------------------------------------

  // Records the client has room for now (0 at a limit), at most
  // `max_records`: under the message limit, and under the byte limit at the
  // average size of the records in progress.
  int Room(int max_records) const;

  // Takes a record read from Kafka: delivers it, holds it behind its key, or
  // keeps it waiting while the client is at its limits. Returns false (and
  // drops it) when its partition is not assigned or its offset was seen.
  bool Offer(std::shared_ptr<const InboundRecord> record, absl::Time now);

  // --- What the client says ---------------------------------------------

  std::vector<AckError> Ack(absl::Span<const uint64_t> ids, absl::Time now);
  std::vector<AckError> Nack(absl::Span<const uint64_t> ids,
                             std::optional<absl::Duration> delay,
                             absl::Time now);
  std::vector<AckError> DeadLetter(absl::Span<const uint64_t> ids,
                                   const std::string& reason, absl::Time now);
  std::vector<AckError> Extend(absl::Span<const uint64_t> ids,
                               absl::Duration deadline, absl::Time now);

  // --- Time ---------------------------------------------------------------

  // Redelivers what passed its ack deadline (at most every 100 ms; ids at
  // or above `first_unsent`, still queued for a slow reader, get a new
  // deadline instead) and what is due for redelivery, and admits waiting
  // records the limits allow.
  void Tick(absl::Time now, uint64_t first_unsent);

  // --- What to do, taken by the driver ------------------------------------

  // Deliveries to send to the client, in order.
  std::vector<Delivery> TakeDeliveries();

  struct DeadLetterWrite {
    uint64_t ticket = 0;  // for DeadLettered
    std::shared_ptr<const InboundRecord> record;
    int attempts = 0;
    std::string reason;
  };
  // Events to write to the dead-letter topic now. Each must be answered
  // with DeadLettered.
  std::vector<DeadLetterWrite> TakeDeadLetterWrites();
  // The result of a write: done (the event is finished), or retried after a
  // backoff that grows with the failures in a row.
  void DeadLettered(uint64_t ticket, const absl::Status& status,
                    absl::Time now);

  // Records of finished events, for the caller to destroy: acks come on
  // gRPC's threads, and a record freed there, away from the thread that
  // allocated it, costs more (glibc locks the other thread's arena).
  std::vector<std::shared_ptr<const InboundRecord>> TakeFinished();

  // Offsets that may be committed and changed since the last call (each is
  // one past the last offset of a partition's fully finished prefix).
  std::vector<std::pair<TopicPartition, int64_t>> TakeOffsetsToStore();
  // Storing that partition's offset failed: offer it again next time.
  void StoreFailed(const TopicPartition& partition);

  // --- State ----------------------------------------------------------------

  struct Stats {
    int64_t in_progress_messages = 0;  // counted states
    int64_t in_progress_bytes = 0;
    int64_t waiting = 0;
    int64_t outstanding = 0;
    int64_t scheduled = 0;
    int64_t held = 0;
    int64_t dead_letter_writes = 0;  // queued or in flight
  };
  Stats stats() const;
  bool assigned(const TopicPartition& partition) const;

 private:
  struct PartitionState;
  struct Outstanding {
    std::shared_ptr<const InboundRecord> record;
    PartitionState* partition;  // valid: revocation removes its entries
    int attempt = 1;
    absl::Time deadline;
    absl::Time sent;
  };
  struct Scheduled {
    enum class Kind { kRedelivery, kDeadLetterWrite };
    Kind kind = Kind::kRedelivery;
    absl::Time due;
    std::shared_ptr<const InboundRecord> record;
    PartitionState* partition;
    int attempt = 1;     // kRedelivery: the coming attempt
    int attempts = 0;    // kDeadLetterWrite: attempts made
    std::string reason;  // kDeadLetterWrite
  };
  struct DeadLetterEntry {
    std::shared_ptr<const InboundRecord> record;
    uint64_t generation = 0;  // of its partition when it was decided
    int attempts = 0;
    std::string reason;
    bool taken = false;  // handed to the driver
  };
  struct KeyQueue {
    bool busy = false;
    std::deque<std::shared_ptr<const InboundRecord>> held;
  };
  struct PartitionState {
    TopicPartition name;
    PartitionAckTracker tracker;
    absl::flat_hash_map<std::string, KeyQueue> keys;  // ordered modes
    std::optional<int64_t> stored;  // last offset given to store
    uint64_t generation = 0;
  };

  PartitionState* Find(absl::string_view topic, int32_t partition);
  std::string OrderKey(const InboundRecord& record) const;
  bool OverLimit() const;
  void Admit(std::shared_ptr<const InboundRecord> record,
             PartitionState* partition, absl::Time now);
  void Send(std::shared_ptr<const InboundRecord> record,
            PartitionState* partition, int attempt, absl::Time now);
  // The one place a counted record leaves the count.
  void Release(const InboundRecord& record);
  // Done: the offset may be committed, and the next event of its key goes.
  void Finish(std::shared_ptr<const InboundRecord> record,
              PartitionState* partition, absl::Time now);
  // Another attempt after a delay, or the dead-letter topic after the last.
  void Retry(std::shared_ptr<const InboundRecord> record,
             PartitionState* partition, int attempt,
             std::optional<absl::Duration> delay, RedeliveryReason why,
             absl::Time now);
  void QueueDeadLetter(std::shared_ptr<const InboundRecord> record,
                       PartitionState* partition, int attempts,
                       std::string reason);
  void AdmitWaiting(absl::Time now);
  absl::Duration Backoff(int attempt) const;
  absl::Status LookUp(uint64_t id) const;
  void Forget(uint64_t id, std::string why);
  template <typename Fn>
  std::vector<AckError> Take(absl::Span<const uint64_t> ids, Fn fn);

  const GroupConsumerOptions options_;
  // std::map: PartitionState pointers stay valid until revocation.
  std::map<TopicPartition, PartitionState, TopicPartitionLess> partitions_;
  absl::flat_hash_map<uint64_t, Outstanding> outstanding_;
  std::vector<Scheduled> scheduled_;
  absl::flat_hash_map<uint64_t, DeadLetterEntry> dead_letters_;
  std::deque<std::shared_ptr<const InboundRecord>> waiting_;
  std::vector<Delivery> to_send_;
  std::vector<std::shared_ptr<const InboundRecord>> finished_;
  // Ids no longer outstanding because their partition was revoked or they
  // were redelivered; remembered to answer late acks clearly.
  absl::flat_hash_map<uint64_t, std::string> gone_;
  std::deque<uint64_t> gone_order_;
  uint64_t next_id_ = 1;
  uint64_t next_ticket_ = 1;
  uint64_t next_generation_ = 1;
  int64_t in_progress_messages_ = 0;
  int64_t in_progress_bytes_ = 0;
  int64_t held_ = 0;
  // Dead-letter writes failed in a row; sets their retry backoff.
  int dead_letter_failures_ = 0;
  absl::Time next_deadline_scan_ = absl::InfinitePast();
};

}  // namespace eventbus::kafka
