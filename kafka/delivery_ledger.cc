#include "kafka/delivery_ledger.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace eventbus::kafka {
namespace {

constexpr absl::Duration kDeadlineScanInterval = absl::Milliseconds(100);
// Ids of deliveries that went away, remembered to explain late acks.
constexpr size_t kMaxGoneIds = 100000;

}  // namespace

DeliveryLedger::DeliveryLedger(const GroupConsumerOptions& options)
    : options_(options) {}

DeliveryLedger::PartitionState* DeliveryLedger::Find(absl::string_view topic,
                                                     int32_t partition) {
  auto it = partitions_.find(TopicPartitionRef{topic, partition});
  return it == partitions_.end() ? nullptr : &it->second;
}

bool DeliveryLedger::assigned(const TopicPartition& partition) const {
  return partitions_.count(partition) > 0;
}

void DeliveryLedger::Assign(const TopicPartition& partition) {
  // Assigned again without a revocation between (librdkafka does not do
  // that): what the old assignment held goes, as if it was lost.
  if (partitions_.count(partition) > 0) Revoke({partition}, /*lost=*/true);
  PartitionState& state = partitions_[partition];
  state = PartitionState();
  state.name = partition;
  state.generation = next_generation_++;
}

DeliveryLedger::Revocation DeliveryLedger::Revoke(
    absl::Span<const TopicPartition> partitions, bool lost) {
  Revocation out;
  std::set<const PartitionState*> gone;
  for (const TopicPartition& tp : partitions) {
    auto it = partitions_.find(tp);
    if (it == partitions_.end()) continue;
    gone.insert(&it->second);
    out.partitions.push_back(tp);
    if (std::optional<int64_t> offset = it->second.tracker.CommitOffset();
        offset && !lost) {
      out.commit.emplace_back(tp, *offset);
    }
  }
  if (gone.empty()) return out;
  const std::string why = lost ? "its partition was lost (the group moved on)"
                               : "its partition was revoked in a rebalance; "
                                 "the event goes to the partition's new owner";
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    if (gone.count(it->second.partition) > 0) {
      Release(*it->second.record);
      Forget(it->first, why);
      outstanding_.erase(it++);
    } else {
      ++it;
    }
  }
  std::erase_if(scheduled_, [&](const Scheduled& s) {
    if (gone.count(s.partition) == 0) return false;
    Release(*s.record);
    return true;
  });
  for (const PartitionState* state : gone) {
    for (const auto& [key, queue] : state->keys) {
      for (const auto& record : queue.held) {
        Release(*record);
        --held_;
      }
    }
  }
  auto in_gone = [this, &gone](const InboundRecord& r) {
    return gone.count(Find(r.topic, r.partition)) > 0;
  };
  std::erase_if(to_send_, [&](const Delivery& d) { return in_gone(*d.record); });
  std::erase_if(waiting_, [&](const auto& r) { return in_gone(*r); });
  // Dead-letter writes of these partitions go on; DeadLettered sees the
  // generation changed and only releases them.
  for (const TopicPartition& tp : out.partitions) partitions_.erase(tp);
  return out;
}

int DeliveryLedger::Room(int max_records) const {
  if (OverLimit() || !waiting_.empty()) return 0;
  int64_t room = std::min<int64_t>(
      max_records, options_.max_outstanding_messages - in_progress_messages_);
  if (in_progress_messages_ > 0 && in_progress_bytes_ > 0) {
    // Records to come are guessed to be the size of those in progress, so
    // that a batch of large records does not pile up far past the byte
    // limit in waiting_.
    const int64_t average = in_progress_bytes_ / in_progress_messages_ + 1;
    room = std::min(room, std::max<int64_t>(
        1, (options_.max_outstanding_bytes - in_progress_bytes_) / average));
  }
  return static_cast<int>(std::max<int64_t>(room, 0));
}

bool DeliveryLedger::OverLimit() const {
  return in_progress_messages_ >= options_.max_outstanding_messages ||
         in_progress_bytes_ >= options_.max_outstanding_bytes;
}

bool DeliveryLedger::Offer(std::shared_ptr<const InboundRecord> record,
                           absl::Time now) {
  PartitionState* partition = Find(record->topic, record->partition);
  if (partition == nullptr || !partition->tracker.Track(record->offset)) {
    return false;  // revoked meanwhile, or already seen
  }
  if (OverLimit() || !waiting_.empty()) {
    waiting_.push_back(std::move(record));
    return true;
  }
  Admit(std::move(record), partition, now);
  return true;
}

void DeliveryLedger::AdmitWaiting(absl::Time now) {
  while (!waiting_.empty() && !OverLimit()) {
    std::shared_ptr<const InboundRecord> record = std::move(waiting_.front());
    waiting_.pop_front();
    // Waiting records of revoked partitions were removed with them.
    Admit(record, Find(record->topic, record->partition), now);
  }
}

std::string DeliveryLedger::OrderKey(const InboundRecord& record) const {
  if (options_.ordering == Ordering::kPerKey) {
    return record.key.has_value() ? absl::StrCat("k", *record.key) : "n";
  }
  return "p";
}

void DeliveryLedger::Admit(std::shared_ptr<const InboundRecord> record,
                           PartitionState* partition, absl::Time now) {
  ++in_progress_messages_;
  in_progress_bytes_ += static_cast<int64_t>(record->Bytes());
  if (options_.ordering != Ordering::kUnordered) {
    KeyQueue& queue = partition->keys[OrderKey(*record)];
    if (queue.busy) {
      queue.held.push_back(std::move(record));
      ++held_;
      return;
    }
    queue.busy = true;
  }
  Send(std::move(record), partition, 1, now);
}

void DeliveryLedger::Send(std::shared_ptr<const InboundRecord> record,
                          PartitionState* partition, int attempt,
                          absl::Time now) {
  const uint64_t id = next_id_++;
  if (options_.observer != nullptr) {
    options_.observer->Delivered(*record, attempt, now);
  }
  outstanding_.emplace(id, Outstanding{record, partition, attempt,
                                       now + options_.ack_deadline, now});
  to_send_.push_back(Delivery{id, attempt, std::move(record)});
}

void DeliveryLedger::Release(const InboundRecord& record) {
  --in_progress_messages_;
  in_progress_bytes_ -= static_cast<int64_t>(record.Bytes());
}

void DeliveryLedger::Finish(std::shared_ptr<const InboundRecord> record,
                            PartitionState* partition, absl::Time now) {
  Release(*record);
  partition->tracker.Ack(record->offset);
  std::shared_ptr<const InboundRecord> next;
  if (options_.ordering != Ordering::kUnordered) {
    auto it = partition->keys.find(OrderKey(*record));
    if (it != partition->keys.end()) {
      KeyQueue& queue = it->second;
      if (queue.held.empty()) {
        partition->keys.erase(it);
      } else {
        next = std::move(queue.held.front());
        queue.held.pop_front();
        --held_;
      }
    }
  }
  finished_.push_back(std::move(record));
  if (next != nullptr) Send(std::move(next), partition, 1, now);
}

std::vector<std::shared_ptr<const InboundRecord>> DeliveryLedger::TakeFinished() {
  std::vector<std::shared_ptr<const InboundRecord>> out;
  out.swap(finished_);
  return out;
}

absl::Duration DeliveryLedger::Backoff(int attempt) const {
  absl::Duration d = options_.retry_backoff;
  for (int i = 1; i < attempt && d < options_.retry_backoff_max; ++i) d *= 2;
  return std::min(d, options_.retry_backoff_max);
}

void DeliveryLedger::Retry(std::shared_ptr<const InboundRecord> record,
                           PartitionState* partition, int attempt,
                           std::optional<absl::Duration> delay,
                           RedeliveryReason why, absl::Time now) {
  if (attempt >= options_.max_delivery_attempts) {
    QueueDeadLetter(std::move(record), partition, attempt,
                    absl::StrCat("max delivery attempts (",
                                 options_.max_delivery_attempts,
                                 ") reached; last: ",
                                 why == RedeliveryReason::kNack
                                     ? "nacked"
                                     : "ack deadline passed"));
    return;
  }
  if (options_.observer != nullptr) {
    options_.observer->Redelivering(*record, why);
  }
  Scheduled s;
  s.kind = Scheduled::Kind::kRedelivery;
  s.due = now + delay.value_or(Backoff(attempt));
  s.record = std::move(record);
  s.partition = partition;
  s.attempt = attempt + 1;
  scheduled_.push_back(std::move(s));
}

void DeliveryLedger::QueueDeadLetter(std::shared_ptr<const InboundRecord> record,
                                     PartitionState* partition, int attempts,
                                     std::string reason) {
  dead_letters_.emplace(next_ticket_++,
                        DeadLetterEntry{std::move(record), partition->generation,
                                        attempts, std::move(reason), false});
}

std::vector<DeliveryLedger::DeadLetterWrite>
DeliveryLedger::TakeDeadLetterWrites() {
  std::vector<DeadLetterWrite> out;
  for (auto& [ticket, entry] : dead_letters_) {
    if (entry.taken) continue;
    entry.taken = true;
    out.push_back({ticket, entry.record, entry.attempts, entry.reason});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.ticket < b.ticket; });
  return out;
}

void DeliveryLedger::DeadLettered(uint64_t ticket, const absl::Status& status,
                                  absl::Time now) {
  auto it = dead_letters_.find(ticket);
  if (it == dead_letters_.end()) return;
  DeadLetterEntry entry = std::move(it->second);
  dead_letters_.erase(it);
  PartitionState* partition = Find(entry.record->topic, entry.record->partition);
  // Revoked (and maybe assigned again) meanwhile: the new owner has the
  // event; only the flow-control count still holds it.
  if (partition == nullptr || partition->generation != entry.generation) {
    Release(*entry.record);
    return;
  }
  if (status.ok()) {
    dead_letter_failures_ = 0;
    if (options_.observer != nullptr) {
      options_.observer->DeadLettered(*entry.record);
    }
    Finish(std::move(entry.record), partition, now);
    return;
  }
  ++dead_letter_failures_;
  Scheduled s;
  s.kind = Scheduled::Kind::kDeadLetterWrite;
  s.due = now + Backoff(dead_letter_failures_);
  s.record = std::move(entry.record);
  s.partition = partition;
  s.attempts = entry.attempts;
  s.reason = std::move(entry.reason);
  scheduled_.push_back(std::move(s));
}

absl::Status DeliveryLedger::LookUp(uint64_t id) const {
  if (auto it = gone_.find(id); it != gone_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("delivery ", id, " is no longer outstanding: ", it->second));
  }
  if (id == 0 || id >= next_id_) {
    return absl::NotFoundError(
        absl::StrCat("delivery ", id, " was never sent on this stream"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("delivery ", id,
                   " is no longer outstanding: it was already acked, nacked "
                   "or dead-lettered"));
}

void DeliveryLedger::Forget(uint64_t id, std::string why) {
  gone_.emplace(id, std::move(why));
  gone_order_.push_back(id);
  while (gone_order_.size() > kMaxGoneIds) {
    gone_.erase(gone_order_.front());
    gone_order_.pop_front();
  }
}

template <typename Fn>
std::vector<AckError> DeliveryLedger::Take(absl::Span<const uint64_t> ids,
                                           Fn fn) {
  std::vector<AckError> errors;
  for (uint64_t id : ids) {
    auto it = outstanding_.find(id);
    if (it == outstanding_.end()) {
      errors.push_back({id, LookUp(id)});
      continue;
    }
    Outstanding o = std::move(it->second);
    outstanding_.erase(it);
    fn(std::move(o));
  }
  return errors;
}

std::vector<AckError> DeliveryLedger::Ack(absl::Span<const uint64_t> ids,
                                          absl::Time now) {
  std::vector<AckError> errors = Take(ids, [&](Outstanding o) {
    if (options_.observer != nullptr) {
      options_.observer->Acked(*o.record, now - o.sent);
    }
    Finish(std::move(o.record), o.partition, now);
  });
  AdmitWaiting(now);
  return errors;
}

std::vector<AckError> DeliveryLedger::Nack(absl::Span<const uint64_t> ids,
                                           std::optional<absl::Duration> delay,
                                           absl::Time now) {
  return Take(ids, [&](Outstanding o) {
    if (options_.observer != nullptr) options_.observer->Nacked(*o.record);
    Retry(std::move(o.record), o.partition, o.attempt, delay,
          RedeliveryReason::kNack, now);
  });
}

std::vector<AckError> DeliveryLedger::DeadLetter(absl::Span<const uint64_t> ids,
                                                 const std::string& reason,
                                                 absl::Time) {
  return Take(ids, [&](Outstanding o) {
    QueueDeadLetter(std::move(o.record), o.partition, o.attempt,
                    reason.empty() ? "dead-lettered by the subscriber" : reason);
  });
}

std::vector<AckError> DeliveryLedger::Extend(absl::Span<const uint64_t> ids,
                                             absl::Duration deadline,
                                             absl::Time now) {
  std::vector<AckError> errors;
  for (uint64_t id : ids) {
    auto it = outstanding_.find(id);
    if (it == outstanding_.end()) {
      errors.push_back({id, LookUp(id)});
    } else {
      it->second.deadline = now + deadline;
    }
  }
  return errors;
}

void DeliveryLedger::Tick(absl::Time now, uint64_t first_unsent) {
  if (now >= next_deadline_scan_) {
    next_deadline_scan_ = now + kDeadlineScanInterval;
    std::vector<uint64_t> expired;
    for (auto& [id, o] : outstanding_) {
      if (o.deadline > now) continue;
      if (id >= first_unsent) {
        // Still queued for a slow reader: the client has not seen it, so
        // its deadline has not really started.
        o.deadline = now + options_.ack_deadline;
        continue;
      }
      expired.push_back(id);
    }
    std::sort(expired.begin(), expired.end());
    for (uint64_t id : expired) {
      auto it = outstanding_.find(id);
      Outstanding o = std::move(it->second);
      outstanding_.erase(it);
      Forget(id, o.attempt >= options_.max_delivery_attempts
                   ? "its ack deadline passed on its last attempt and it "
                     "went to the dead-letter topic"
                   : "its ack deadline passed and it was redelivered under "
                     "a new id");
      Retry(std::move(o.record), o.partition, o.attempt, std::nullopt,
            RedeliveryReason::kDeadline, now);
    }
  }
  auto split = std::stable_partition(
      scheduled_.begin(), scheduled_.end(),
      [now](const Scheduled& s) { return s.due > now; });
  if (split != scheduled_.end()) {
    std::vector<Scheduled> due(std::make_move_iterator(split),
                               std::make_move_iterator(scheduled_.end()));
    scheduled_.erase(split, scheduled_.end());
    std::stable_sort(due.begin(), due.end(),
                     [](const auto& a, const auto& b) { return a.due < b.due; });
    for (Scheduled& s : due) {
      if (s.kind == Scheduled::Kind::kDeadLetterWrite) {
        QueueDeadLetter(std::move(s.record), s.partition, s.attempts,
                        std::move(s.reason));
      } else {
        Send(std::move(s.record), s.partition, s.attempt, now);
      }
    }
  }
  AdmitWaiting(now);
}

std::vector<Delivery> DeliveryLedger::TakeDeliveries() {
  std::vector<Delivery> out;
  out.swap(to_send_);
  // A round's worth, so that the next round does not grow it step by step.
  to_send_.reserve(out.size());
  return out;
}

std::vector<std::pair<TopicPartition, int64_t>>
DeliveryLedger::TakeOffsetsToStore() {
  std::vector<std::pair<TopicPartition, int64_t>> out;
  for (auto& [tp, state] : partitions_) {
    std::optional<int64_t> commit = state.tracker.CommitOffset();
    if (commit && commit != state.stored) {
      out.emplace_back(tp, *commit);
      state.stored = commit;
    }
  }
  return out;
}

void DeliveryLedger::StoreFailed(const TopicPartition& partition) {
  auto it = partitions_.find(partition);
  if (it != partitions_.end()) it->second.stored.reset();
}

DeliveryLedger::Stats DeliveryLedger::stats() const {
  Stats s;
  s.in_progress_messages = in_progress_messages_;
  s.in_progress_bytes = in_progress_bytes_;
  s.waiting = static_cast<int64_t>(waiting_.size());
  s.outstanding = static_cast<int64_t>(outstanding_.size());
  s.scheduled = static_cast<int64_t>(scheduled_.size());
  s.held = held_;
  s.dead_letter_writes = static_cast<int64_t>(dead_letters_.size());
  return s;
}

}  // namespace eventbus::kafka
