#include "kafka/group_consumer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/trace_context.h"
#include "kafka/rdkafka_producer.h"

namespace eventbus::kafka {
namespace {

constexpr int kPollTimeoutMs = 100;
// Records taken from librdkafka before deliveries are handed on.
constexpr int kMaxRecordsPerRound = 500;
// Records taken at once before the client's room is looked at again.
constexpr int kRecordsPerTake = 64;
constexpr int kCommitTimeoutMs = 10000;

std::string PartitionName(absl::string_view topic, int32_t partition) {
  return absl::StrCat(topic, "[", partition, "]");
}

InboundRecord ToInboundRecord(const rd_kafka_message_t* msg) {
  std::optional<absl::string_view> key, value;
  if (msg->key != nullptr) {
    key.emplace(static_cast<const char*>(msg->key), msg->key_len);
  }
  if (msg->payload != nullptr) {
    value.emplace(static_cast<const char*>(msg->payload), msg->len);
  }
  // Views of librdkafka's copy, valid while `msg` is; Make copies them.
  absl::InlinedVector<HeaderView, 8> headers;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* v;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &v, &size) ==
         RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      headers.push_back(
          {name, v == nullptr ? absl::string_view()
                              : absl::string_view(static_cast<const char*>(v), size)});
    }
  }
  rd_kafka_timestamp_type_t type;
  return InboundRecord::Make(rd_kafka_topic_name(msg->rkt), msg->partition,
                             msg->offset, key, value, headers,
                             rd_kafka_message_timestamp(msg, &type));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GroupConsumer>> GroupConsumer::Start(
    GroupConsumerOptions options, Producer* dead_letters, DeliverySink* sink) {
  std::unique_ptr<GroupConsumer> consumer(
      new GroupConsumer(std::move(options), dead_letters, sink));
  absl::Status status = consumer->Init();
  if (!status.ok()) return status;
  consumer->thread_ = std::thread([c = consumer.get()] {
    pthread_setname_np(pthread_self(), "eb-consumer");
    c->Run();
  });
  return consumer;
}

GroupConsumer::GroupConsumer(GroupConsumerOptions options,
                             Producer* dead_letters, DeliverySink* sink)
    : options_(std::move(options)),
      dead_letters_(dead_letters),
      sink_(sink),
      ledger_(options_) {}

GroupConsumer::~GroupConsumer() { Close(); }

absl::Status GroupConsumer::Init() {
  std::map<std::string, std::string> props = {
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "1000"},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"enable.partition.eof", "false"},
      // The read-ahead: records the client has no room for wait here, and
      // librdkafka stops fetching while it is full.
      {"queued.max.messages.kbytes",
       absl::StrCat(std::max<int64_t>(1, options_.read_ahead_bytes >> 10))},
      // How soon librdkafka looks again at a queue that was full (its
      // default, a second, made a client reading a backlog faster than the
      // read-ahead per second wait out most of that second at every refill;
      // librdkafka 2.0.2 had no setting and eventbus woke the fetcher with
      // watermark queries instead).
      {"fetch.queue.backoff.ms", "10"},
      {"fetch.max.bytes", "8388608"},
      {"auto.offset.reset",
       options_.start == StartPosition::kEarliest ? "earliest" : "latest"},
  };
  for (const auto& [k, v] : options_.properties) props[k] = v;
  // Not overridable: they are what at-least-once rests on.
  props["group.id"] = options_.group;
  props["enable.auto.offset.store"] = "false";
  cooperative_ =
      props["partition.assignment.strategy"].find("cooperative") != std::string::npos;

  absl::StatusOr<RdKafkaConfPtr> conf = MakeRdKafkaConf(props);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(conf->get(), this);
  rd_kafka_conf_set_rebalance_cb(conf->get(), &GroupConsumer::RebalanceCallback);
  if (options_.observer != nullptr) {
    rd_kafka_conf_set_stats_cb(conf->get(), &GroupConsumer::StatsCallback);
  }
  char errstr[512];
  rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), errstr, sizeof(errstr)));
  if (rk_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create the Kafka consumer: ", errstr));
  }
  conf->release();
  rd_kafka_poll_set_consumer(rk_.get());
  {
    absl::MutexLock lock(&wake_mu_);
    queue_.reset(rd_kafka_queue_get_consumer(rk_.get()));
    records_.reset(rd_kafka_queue_new(rk_.get()));
    records_queue_ = records_.get();
  }

  RdKafkaTopicPartitionListPtr topics(rd_kafka_topic_partition_list_new(
      static_cast<int>(options_.topics.size())));
  for (const std::string& t : options_.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(),
                                      RD_KAFKA_PARTITION_UA);
  }
  rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_.get(), topics.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot subscribe to ", absl::StrJoin(options_.topics, ", "),
                     ": ", rd_kafka_err2str(err)));
  }
  spdlog::info("group {}: member joining for {}", options_.group,
               absl::StrJoin(options_.topics, ", "));
  return absl::OkStatus();
}

void GroupConsumer::Stop() {
  stop_.store(true);
  Wake();
}

void GroupConsumer::Close() {
  if (closed_) return;
  closed_ = true;
  stop_.store(true);
  if (thread_.joinable()) {
    Wake();
    thread_.join();
  }
}

DeliveryLedger::Stats GroupConsumer::stats() const {
  absl::MutexLock lock(&mu_);
  return ledger_.stats();
}

void GroupConsumer::Wake() {
  absl::MutexLock lock(&wake_mu_);
  // A yield would cut rd_kafka_consumer_close short (it serves this queue),
  // and librdkafka then hangs in rd_kafka_destroy (seen with 2.0.2).
  if (closing_) return;
  if (queue_ != nullptr) rd_kafka_queue_yield(queue_.get());
  if (records_ != nullptr) rd_kafka_queue_yield(records_.get());
}

int GroupConsumer::Room() const {
  absl::MutexLock lock(&mu_);
  return ledger_.Room(kMaxRecordsPerRound);
}

// Each round serves the consumer queue (rebalances, errors), then takes as
// many records as the client has room for, blocking on whichever queue can
// bring progress: the records when there is room, else the consumer queue
// (an ack wakes it). Records the client has no room for stay in librdkafka,
// whose queue is bounded (read_ahead_bytes): no pause and resume, so a
// client working at its limit never waits for a fetch.
void GroupConsumer::Run() {
  std::vector<rd_kafka_message_t*> batch(kRecordsPerTake);
  while (!stop_.load()) {
    int room = Room();
    RdKafkaMessagePtr event(
        rd_kafka_consumer_poll(rk_.get(), room > 0 ? 0 : kPollTimeoutMs));
    // Records come here too for a partition whose queue could not be
    // forwarded (see OnAssign).
    if (event != nullptr) OnMessage(event.get());
    room = Room();
    if (room > 0 && !stop_.load()) {
      // The first record blocks (consume_batch would wait out its whole
      // timeout for a full batch); the rest are what is there already.
      RdKafkaMessagePtr first(rd_kafka_consume_queue(records_queue_, kPollTimeoutMs));
      if (first != nullptr) {
        OnMessage(first.get());
        // The rest in takes of a few, the room looked at again after each
        // (it shrinks by bytes too).
        for (int taken = 1; taken < kMaxRecordsPerRound;) {
          const int want = std::min({Room(), kRecordsPerTake,
                                     kMaxRecordsPerRound - taken});
          if (want <= 0) break;
          const ssize_t n = rd_kafka_consume_batch_queue(
              records_queue_, 0, batch.data(), static_cast<size_t>(want));
          for (ssize_t i = 0; i < n; ++i) {
            RdKafkaMessagePtr msg(batch[i]);
            OnMessage(msg.get());
          }
          if (n < want) break;
          taken += static_cast<int>(n);
        }
      }
    }
    Tick();
  }
  // Leave the group: store what was acked, close (the revoke callback
  // commits it synchronously), then wait for dead-letter writes that still
  // reference this object.
  std::vector<std::pair<TopicPartition, int64_t>> offsets;
  {
    absl::MutexLock lock(&mu_);
    offsets = ledger_.TakeOffsetsToStore();
  }
  if (!offsets.empty()) StoreOffsets(offsets);
  {
    absl::MutexLock lock(&wake_mu_);
    closing_ = true;
  }
  // Take a yield that arrived before closing_ was set, so it cannot end the
  // close early.
  RdKafkaMessagePtr discarded(rd_kafka_consumer_poll(rk_.get(), 0));
  discarded.reset();  // no message may outlive rd_kafka_destroy
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  for (int i = 0; i < 3 && err == RD_KAFKA_RESP_ERR__TIMED_OUT; ++i) {
    err = rd_kafka_consumer_close(rk_.get());
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("group {}: consumer close: {}", options_.group,
                 rd_kafka_err2str(err));
  }
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return dead_letters_in_flight_ == 0;
    };
    mu_.Await(absl::Condition(&done));
  }
  {
    absl::MutexLock lock(&wake_mu_);
    queue_.reset();
    // Records still in it belong to revoked partitions: dropped.
    records_.reset();
    records_queue_ = nullptr;
  }
  // Closed above; a second close inside destroy could wait forever.
  rd_kafka_destroy_flags(rk_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  spdlog::info("group {}: member left", options_.group);
}

void GroupConsumer::OnMessage(const rd_kafka_message_t* msg) {
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const std::string what =
        absl::StrCat(rd_kafka_err2name(msg->err), ": ",
                     rd_kafka_message_errstr(msg));
    switch (msg->err) {
      case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        return;
      case RD_KAFKA_RESP_ERR__FATAL:
      case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
      case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED: {
        bool first;
        {
          absl::MutexLock lock(&mu_);
          first = !failed_;
          failed_ = true;
        }
        if (first) {
          sink_->Failed(
              msg->err == RD_KAFKA_RESP_ERR__FATAL
                  ? absl::InternalError(absl::StrCat("Kafka consumer failed: ", what))
                  : absl::PermissionDeniedError(absl::StrCat(
                        "Kafka refused the subscription of group \"",
                        options_.group, "\" to ", absl::StrJoin(options_.topics, ", "),
                        ": ", what)));
        }
        return;
      }
      default:
        spdlog::warn("group {}: {}", options_.group, what);
        return;
    }
  }
  auto record = std::make_shared<const InboundRecord>(ToInboundRecord(msg));
  absl::MutexLock lock(&mu_);
  ledger_.Offer(std::move(record), Now());
}

int GroupConsumer::StatsCallback(rd_kafka_t*, char* json, size_t json_len,
                                 void* opaque) noexcept {
  auto* self = static_cast<GroupConsumer*>(opaque);
  absl::StatusOr<RdKafkaStats> stats =
      ParseRdKafkaStats(absl::string_view(json, json_len));
  if (stats.ok()) self->options_.observer->PartitionLags(stats->lags);
  return 0;  // librdkafka frees `json`
}

std::string GroupConsumer::DeadLetterTopic(absl::string_view topic) const {
  return options_.dead_letter_topic.empty()
             ? absl::StrCat(topic, options_.dead_letter_suffix)
             : options_.dead_letter_topic;
}

void GroupConsumer::WriteDeadLetters(
    std::vector<DeliveryLedger::DeadLetterWrite> writes) {
  for (DeliveryLedger::DeadLetterWrite& write : writes) {
    const InboundRecord& record = *write.record;
    Record out;
    out.topic = DeadLetterTopic(record.topic);
    if (record.key) out.key.emplace(*record.key);
    if (record.value) out.value = std::string(*record.value);
    out.headers.reserve(record.headers.size() + 6);
    for (const HeaderView& h : record.headers) {
      out.headers.push_back({std::string(h.name), std::string(h.value)});
    }
    out.headers.push_back({"eventbus.dlq.topic", std::string(record.topic)});
    out.headers.push_back({"eventbus.dlq.partition", absl::StrCat(record.partition)});
    out.headers.push_back({"eventbus.dlq.offset", absl::StrCat(record.offset)});
    out.headers.push_back({"eventbus.dlq.attempts", absl::StrCat(write.attempts)});
    out.headers.push_back({"eventbus.dlq.reason", write.reason});
    out.headers.push_back({"eventbus.dlq.group", options_.group});
    {
      absl::MutexLock lock(&mu_);
      ++dead_letters_in_flight_;
    }
    auto shared = std::make_shared<DeliveryLedger::DeadLetterWrite>(std::move(write));
    absl::Status status = dead_letters_->Produce(
        std::move(out), Now() + options_.dead_letter_timeout,
        [this, shared](DeliveryResult result) {
          OnDeadLettered(*shared, std::move(result.status));
        });
    if (!status.ok()) OnDeadLettered(*shared, std::move(status));
  }
}

namespace {

// " trace <id>" for a record with a valid ce_traceparent header, else "":
// log lines about an event name its trace.
std::string TraceSuffix(const InboundRecord& record) {
  for (const HeaderView& h : record.headers) {
    if (h.name != "ce_traceparent") continue;
    const absl::string_view id = common::TraceIdOf(h.value);
    if (!id.empty()) return absl::StrCat(" trace ", id);
  }
  return "";
}

}  // namespace

void GroupConsumer::OnDeadLettered(const DeliveryLedger::DeadLetterWrite& write,
                                   absl::Status status) {
  const InboundRecord& record = *write.record;
  if (status.ok()) {
    spdlog::info("group {}: {} offset {}{} sent to {} after {} attempts: {}",
                 options_.group, PartitionName(record.topic, record.partition),
                 record.offset, TraceSuffix(record),
                 DeadLetterTopic(record.topic), write.attempts, write.reason);
  } else {
    spdlog::warn("group {}: dead-letter write for {} offset {}{} failed ({}); "
                 "retrying",
                 options_.group, PartitionName(record.topic, record.partition),
                 record.offset, TraceSuffix(record), status.ToString());
  }
  absl::MutexLock lock(&mu_);
  // Wake while the count still holds Close back: once it drops, this
  // object may be destroyed.
  Wake();
  ledger_.DeadLettered(write.ticket, status, Now());
  --dead_letters_in_flight_;
}

std::vector<AckError> GroupConsumer::Ack(absl::Span<const uint64_t> ids) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    errors = ledger_.Ack(ids, Now());
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::Nack(absl::Span<const uint64_t> ids,
                                          std::optional<absl::Duration> delay) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    errors = ledger_.Nack(ids, delay, Now());
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::DeadLetter(absl::Span<const uint64_t> ids,
                                                const std::string& reason) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    errors = ledger_.DeadLetter(ids, reason, Now());
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::Extend(absl::Span<const uint64_t> ids,
                                            absl::Duration deadline) {
  absl::MutexLock lock(&mu_);
  return ledger_.Extend(ids, deadline, Now());
}

void GroupConsumer::Tick() {
  if (stop_.load()) return;
  const uint64_t first_unsent = sink_->FirstUnsentId();
  std::vector<Delivery> deliveries;
  std::vector<DeliveryLedger::DeadLetterWrite> dead_letters;
  std::vector<std::pair<TopicPartition, int64_t>> offsets;
  // Destroyed here, after the lock, on the thread that made them.
  std::vector<std::shared_ptr<const InboundRecord>> finished;
  {
    absl::MutexLock lock(&mu_);
    ledger_.Tick(Now(), first_unsent);
    deliveries = ledger_.TakeDeliveries();
    dead_letters = ledger_.TakeDeadLetterWrites();
    offsets = ledger_.TakeOffsetsToStore();
    finished = ledger_.TakeFinished();
  }
  if (!deliveries.empty()) sink_->Deliver(std::move(deliveries));
  if (!dead_letters.empty()) WriteDeadLetters(std::move(dead_letters));
  if (!offsets.empty()) StoreOffsets(offsets);
}

void GroupConsumer::StoreOffsets(
    const std::vector<std::pair<TopicPartition, int64_t>>& offsets) {
  RdKafkaTopicPartitionListPtr list(
      rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& [tp, offset] : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)
        ->offset = offset;
  }
  rd_kafka_offsets_store(rk_.get(), list.get());
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = list->elems[i];
    if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ledger_.StoreFailed({p.topic, p.partition});  // again on the next tick
    }
  }
}

void GroupConsumer::RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                      rd_kafka_topic_partition_list_t* partitions,
                                      void* opaque) noexcept {
  auto* self = static_cast<GroupConsumer*>(opaque);
  // Decided once from the configured assignor: rd_kafka_rebalance_protocol()
  // is known to hang when called from the callback consumer_close triggers.
  const bool cooperative = self->cooperative_;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    self->OnAssign(partitions);
    std::string error;
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, partitions)) {
        error = rd_kafka_error_string(e);
        rd_kafka_error_destroy(e);
      }
    } else if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, partitions)) {
      error = rd_kafka_err2str(e);
    }
    if (!error.empty()) {
      spdlog::error("group {}: assign: {}", self->options_.group, error);
      self->OnRevoke(partitions, /*lost=*/true);
    }
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    self->OnRevoke(partitions, rd_kafka_assignment_lost(rk) != 0);
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_unassign(rk, partitions);
      if (error != nullptr) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  } else {
    spdlog::error("group {}: rebalance error: {}", self->options_.group,
                  rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_t* assignment = nullptr;
    if (rd_kafka_assignment(rk, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      RdKafkaTopicPartitionListPtr owned(assignment);
      self->OnRevoke(assignment, /*lost=*/true);
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, assignment)) {
          rd_kafka_error_destroy(e);
        }
      }
    }
    if (!cooperative) rd_kafka_assign(rk, nullptr);
  }
}

void GroupConsumer::OnAssign(rd_kafka_topic_partition_list_t* partitions) {
  if (options_.start == StartPosition::kTime) {
    // Partitions without a committed offset start at start_time.
    RdKafkaTopicPartitionListPtr committed(
        rd_kafka_topic_partition_list_copy(partitions));
    const rd_kafka_resp_err_t err =
        rd_kafka_committed(rk_.get(), committed.get(), kCommitTimeoutMs);
    RdKafkaTopicPartitionListPtr by_time(rd_kafka_topic_partition_list_new(0));
    for (int i = 0; i < committed->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      // Only partitions known to have no committed offset start by time;
      // on any doubt the committed offset wins, so nothing is skipped.
      if (committed->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          committed->elems[i].offset == RD_KAFKA_OFFSET_INVALID) {
        rd_kafka_topic_partition_list_add(by_time.get(), committed->elems[i].topic,
                                          committed->elems[i].partition)
            ->offset = absl::ToUnixMillis(options_.start_time);
      }
    }
    if (by_time->cnt > 0 &&
        rd_kafka_offsets_for_times(rk_.get(), by_time.get(), kCommitTimeoutMs) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < by_time->cnt; ++i) {
        rd_kafka_topic_partition_t* p = rd_kafka_topic_partition_list_find(
            partitions, by_time->elems[i].topic, by_time->elems[i].partition);
        if (p != nullptr) {
          p->offset = by_time->elems[i].offset >= 0 ? by_time->elems[i].offset
                                                    : RD_KAFKA_OFFSET_END;
        }
      }
    }
  }
  // Route the partitions' records to records_ before the assignment starts
  // fetching (librdkafka keeps a forwarding the application set). The
  // partitions of an assignment are known to librdkafka, so getting their
  // queues is not expected to fail; if it did, librdkafka would route the
  // records to the consumer queue, which every round serves: still
  // delivered, though taken without looking at the client's room.
  for (int i = 0; i < partitions->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = partitions->elems[i];
    RdKafkaQueuePtr partition_queue(
        rd_kafka_queue_get_partition(rk_.get(), p.topic, p.partition));
    if (partition_queue == nullptr) {
      spdlog::warn("group {}: no queue for {}", options_.group,
                   PartitionName(p.topic, p.partition));
      continue;
    }
    rd_kafka_queue_forward(partition_queue.get(), records_queue_);
  }
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& p = partitions->elems[i];
      ledger_.Assign({p.topic, p.partition});
      names.push_back(PartitionName(p.topic, p.partition));
    }
  }
  spdlog::info("group {}: assigned {}", options_.group, absl::StrJoin(names, ", "));
}

void GroupConsumer::OnRevoke(rd_kafka_topic_partition_list_t* partitions,
                             bool lost) {
  std::vector<TopicPartition> partitions_of;
  for (int i = 0; i < partitions->cnt; ++i) {
    partitions_of.push_back({partitions->elems[i].topic, partitions->elems[i].partition});
  }
  DeliveryLedger::Revocation revocation;
  {
    absl::MutexLock lock(&mu_);
    revocation = ledger_.Revoke(partitions_of, lost);
  }
  const std::vector<TopicPartition>& revoked = revocation.partitions;
  RdKafkaTopicPartitionListPtr commit(rd_kafka_topic_partition_list_new(
      static_cast<int>(revocation.commit.size())));
  for (const auto& [tp, offset] : revocation.commit) {
    rd_kafka_topic_partition_list_add(commit.get(), tp.topic.c_str(), tp.partition)
        ->offset = offset;
  }
  // Dead-letter writes in flight for these partitions finish on their own;
  // their completion no longer counts (the partition is not assigned).
  sink_->Revoked(revoked);
  if (commit->cnt > 0) {
    // Stored too, not only committed: at unassign, librdkafka's auto-commit
    // commits each removed partition's *stored* offset, which Tick may have
    // stored before the last acks came in; committed after ours, that older
    // offset would take the group back and redeliver acked events to the
    // next owner (seen: an event acked once, its ack answered, delivered
    // again to the member that took the partition). The partitions are
    // still assigned inside this callback, so the store is accepted.
    rd_kafka_offsets_store(rk_.get(), commit.get());
    rd_kafka_resp_err_t err = rd_kafka_commit(rk_.get(), commit.get(), 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      spdlog::warn("group {}: commit on revoke: {}", options_.group,
                   rd_kafka_err2str(err));
    }
  }
  std::vector<std::string> names;
  for (const TopicPartition& tp : revoked) {
    names.push_back(PartitionName(tp.topic, tp.partition));
  }
  spdlog::info("group {}: {} {}", options_.group, lost ? "lost" : "revoked",
               absl::StrJoin(names, ", "));
}

}  // namespace eventbus::kafka
