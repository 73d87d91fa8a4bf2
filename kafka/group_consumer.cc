#include "kafka/group_consumer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kafka/rdkafka_producer.h"

namespace eventbus::kafka {
namespace {

constexpr int kPollTimeoutMs = 100;
// Records taken from librdkafka before deliveries are handed on.
constexpr int kMaxRecordsPerRound = 500;
// Records taken at once before the client's room is looked at again.
constexpr int kRecordsPerTake = 64;
constexpr absl::Duration kDeadlineScanInterval = absl::Milliseconds(100);
constexpr int kCommitTimeoutMs = 10000;
// Ids of deliveries that went away, remembered to explain late acks.
constexpr size_t kMaxGoneIds = 100000;

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

InboundRecord InboundRecord::Make(absl::string_view topic, int32_t partition,
                                  int64_t offset,
                                  std::optional<absl::string_view> key,
                                  std::optional<absl::string_view> value,
                                  absl::Span<const HeaderView> headers,
                                  int64_t timestamp_ms) {
  size_t total = topic.size() + (key ? key->size() : 0) +
                 (value ? value->size() : 0);
  for (const HeaderView& h : headers) total += h.name.size() + h.value.size();
  InboundRecord r;
  r.storage_ = std::make_unique_for_overwrite<char[]>(total);
  char* at = r.storage_.get();
  auto copy = [&at](absl::string_view from) {
    if (!from.empty()) std::memcpy(at, from.data(), from.size());
    absl::string_view to(at, from.size());
    at += from.size();
    return to;
  };
  r.topic = copy(topic);
  r.partition = partition;
  r.offset = offset;
  if (key) r.key = copy(*key);
  if (value) r.value = copy(*value);
  r.headers.reserve(headers.size());
  for (const HeaderView& h : headers) {
    const absl::string_view name = copy(h.name);
    r.headers.push_back({name, copy(h.value)});
  }
  r.timestamp_ms = timestamp_ms;
  return r;
}

size_t InboundRecord::Bytes() const {
  size_t n = (key ? key->size() : 0) + (value ? value->size() : 0);
  for (const HeaderView& h : headers) n += h.name.size() + h.value.size();
  return n;
}

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
    : options_(std::move(options)), dead_letters_(dead_letters), sink_(sink) {}

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

GroupConsumer::Stats GroupConsumer::stats() const {
  Stats s;
  absl::MutexLock lock(&mu_);
  s.in_progress_messages = in_progress_messages_;
  s.in_progress_bytes = in_progress_bytes_;
  s.waiting = static_cast<int64_t>(waiting_.size());
  return s;
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
  if (OverLimit() || !waiting_.empty()) return 0;
  int64_t room = std::min<int64_t>(
      kMaxRecordsPerRound,
      options_.max_outstanding_messages - in_progress_messages_);
  if (in_progress_messages_ > 0 && in_progress_bytes_ > 0) {
    // Records to come are guessed to be the size of those in progress, so
    // that a batch of large records does not pile up far past the byte
    // limit in waiting_.
    const int64_t average = in_progress_bytes_ / in_progress_messages_ + 1;
    room = std::min(room, std::max<int64_t>(
        1, (options_.max_outstanding_bytes - in_progress_bytes_) / average));
  }
  return static_cast<int>(room);
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
    Tick(absl::Now());
    FlushDeliveries();
  }
  // Leave the group: store what was acked, close (the revoke callback
  // commits it synchronously), then wait for dead-letter writes that still
  // reference this object.
  StoreOffsets();
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
                  : absl::PermissionDeniedError(
                        absl::StrCat("Kafka refused the subscription: ", what)));
        }
        return;
      }
      default:
        spdlog::warn("group {}: {}", options_.group, what);
        return;
    }
  }
  auto record = std::make_shared<const InboundRecord>(ToInboundRecord(msg));
  {
    absl::MutexLock lock(&mu_);
    auto it = partitions_.find(TopicPartitionRef{record->topic, record->partition});
    if (it == partitions_.end() || !it->second.tracker.Track(record->offset)) {
      return;  // revoked meanwhile, or already seen
    }
    if (OverLimit() || !waiting_.empty()) {
      waiting_.push_back(std::move(record));
      return;
    }
    ++in_progress_messages_;
    in_progress_bytes_ += static_cast<int64_t>(record->Bytes());
    Admit(std::move(record));
  }
}

void GroupConsumer::AdmitWaiting() {
  while (!waiting_.empty() && !OverLimit()) {
    std::shared_ptr<const InboundRecord> record = std::move(waiting_.front());
    waiting_.pop_front();
    ++in_progress_messages_;
    in_progress_bytes_ += static_cast<int64_t>(record->Bytes());
    Admit(std::move(record));
  }
}

std::string GroupConsumer::OrderKey(const InboundRecord& record) const {
  switch (options_.ordering) {
    case Ordering::kPerKey:
      return record.key.has_value() ? absl::StrCat("k", *record.key) : "n";
    case Ordering::kPerPartition:
      return "p";
    case Ordering::kUnordered:
      break;
  }
  return "";
}

void GroupConsumer::Admit(std::shared_ptr<const InboundRecord> record) {
  if (options_.ordering != Ordering::kUnordered) {
    PartitionState& state =
        partitions_[{std::string(record->topic), record->partition}];
    const std::string key = OrderKey(*record);
    if (state.busy[key] > 0) {
      state.held[key].push_back(std::move(record));
      return;
    }
    state.busy[key] = 1;
  }
  Send(std::move(record), 1, absl::Now());
}

void GroupConsumer::Send(std::shared_ptr<const InboundRecord> record,
                         int attempt, absl::Time now) {
  const uint64_t id = next_id_++;
  outstanding_[id] = Outstanding{record, attempt, now + options_.ack_deadline};
  to_send_.push_back(Delivery{id, attempt, std::move(record)});
}

void GroupConsumer::Release(const InboundRecord& record) {
  --in_progress_messages_;
  in_progress_bytes_ -= static_cast<int64_t>(record.Bytes());
}

void GroupConsumer::Finish(const InboundRecord& record) {
  Release(record);
  auto it = partitions_.find(TopicPartitionRef{record.topic, record.partition});
  if (it == partitions_.end()) return;
  PartitionState& state = it->second;
  state.tracker.Ack(record.offset);
  if (options_.ordering == Ordering::kUnordered) return;
  const std::string key = OrderKey(record);
  auto held = state.held.find(key);
  if (held == state.held.end() || held->second.empty()) {
    state.busy.erase(key);
    if (held != state.held.end()) state.held.erase(held);
    return;
  }
  std::shared_ptr<const InboundRecord> next = std::move(held->second.front());
  held->second.pop_front();
  if (held->second.empty()) state.held.erase(held);
  Send(std::move(next), 1, absl::Now());
}

absl::Duration GroupConsumer::Backoff(int attempt) const {
  absl::Duration d = options_.retry_backoff;
  for (int i = 1; i < attempt && d < options_.retry_backoff_max; ++i) d *= 2;
  return std::min(d, options_.retry_backoff_max);
}

void GroupConsumer::Retry(std::shared_ptr<const InboundRecord> record,
                          int attempt, std::optional<absl::Duration> delay,
                          const std::string& why, absl::Time now) {
  if (attempt >= options_.max_delivery_attempts) {
    SendToDeadLetters(std::move(record), attempt,
                      absl::StrCat("max delivery attempts (",
                                   options_.max_delivery_attempts,
                                   ") reached; last: ", why));
    return;
  }
  retries_.push_back(
      Redelivery{now + delay.value_or(Backoff(attempt)),
                           std::move(record), attempt + 1});
}

std::string GroupConsumer::DeadLetterTopic(absl::string_view topic) const {
  return options_.dead_letter_topic.empty()
             ? absl::StrCat(topic, options_.dead_letter_suffix)
             : options_.dead_letter_topic;
}

void GroupConsumer::SendToDeadLetters(
    std::shared_ptr<const InboundRecord> record, int attempts,
    std::string reason) {
  Record out;
  out.topic = DeadLetterTopic(record->topic);
  if (record->key) out.key.emplace(*record->key);
  if (record->value) out.value = std::string(*record->value);
  out.headers.reserve(record->headers.size() + 6);
  for (const HeaderView& h : record->headers) {
    out.headers.push_back({std::string(h.name), std::string(h.value)});
  }
  out.headers.push_back({"eventbus.dlq.topic", std::string(record->topic)});
  out.headers.push_back({"eventbus.dlq.partition", absl::StrCat(record->partition)});
  out.headers.push_back({"eventbus.dlq.offset", absl::StrCat(record->offset)});
  out.headers.push_back({"eventbus.dlq.attempts", absl::StrCat(attempts)});
  out.headers.push_back({"eventbus.dlq.reason", reason});
  out.headers.push_back({"eventbus.dlq.group", options_.group});
  auto state = partitions_.find(TopicPartitionRef{record->topic, record->partition});
  const uint64_t generation =
      state == partitions_.end() ? 0 : state->second.generation;
  ++dead_letters_in_flight_;
  absl::Status status = dead_letters_->Produce(
      std::move(out), absl::Now() + options_.dead_letter_timeout,
      [this, record, attempts, reason, generation](DeliveryResult result) mutable {
        OnDeadLettered(std::move(record), attempts, std::move(reason),
                       generation, std::move(result.status));
      });
  if (!status.ok()) {
    --dead_letters_in_flight_;
    spdlog::warn("group {}: dead-letter write for {} offset {} refused ({}); "
                 "retrying",
                 options_.group, PartitionName(record->topic, record->partition),
                 record->offset, status.ToString());
    ++dead_letter_failures_;
    retries_.push_back(Redelivery{absl::Now() + Backoff(dead_letter_failures_),
                                  std::move(record), -attempts});
  }
}

void GroupConsumer::OnDeadLettered(std::shared_ptr<const InboundRecord> record,
                                   int attempts, std::string reason,
                                   uint64_t generation, absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    // Wake while the count still holds Close back: once it drops, this
    // object may be destroyed.
    Wake();
    --dead_letters_in_flight_;
    auto state = partitions_.find(TopicPartitionRef{record->topic, record->partition});
    // Revoked (and maybe assigned again) meanwhile: the new owner has the
    // event; only the flow-control counters still hold it.
    const bool assigned = state != partitions_.end() &&
                          state->second.generation == generation;
    if (!assigned) Release(*record);
    if (!status.ok()) {
      spdlog::warn("group {}: dead-letter write for {} offset {} failed ({}); "
                   "retrying",
                   options_.group,
                   PartitionName(record->topic, record->partition),
                   record->offset, status.ToString());
      if (assigned) {
        // A negative attempt marks a dead-letter write to retry.
        ++dead_letter_failures_;
        retries_.push_back(Redelivery{absl::Now() + Backoff(dead_letter_failures_),
                                      std::move(record), -attempts});
      }
    } else {
      dead_letter_failures_ = 0;
      spdlog::info("group {}: {} offset {} sent to {} after {} attempts: {}",
                   options_.group,
                   PartitionName(record->topic, record->partition),
                   record->offset, DeadLetterTopic(record->topic), attempts,
                   reason);
      if (assigned) Finish(*record);
    }
  }
}

absl::Status GroupConsumer::LookUp(uint64_t id) const {
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

template <typename Fn>
std::vector<AckError> GroupConsumer::ForEachOutstanding(
    absl::Span<const uint64_t> ids, Fn fn) {
  std::vector<AckError> errors;
  for (uint64_t id : ids) {
    auto it = outstanding_.find(id);
    if (it == outstanding_.end()) {
      errors.push_back({id, LookUp(id)});
      continue;
    }
    fn(it);
  }
  return errors;
}

template <typename Fn>
std::vector<AckError> GroupConsumer::Take(absl::Span<const uint64_t> ids,
                                          Fn fn) {
  return ForEachOutstanding(ids, [&](auto it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Outstanding o = std::move(it->second);
    outstanding_.erase(it);
    fn(std::move(o));
  });
}

std::vector<AckError> GroupConsumer::Ack(absl::Span<const uint64_t> ids) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    errors = Take(ids, [this](Outstanding o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      Finish(*o.record);
    });
    AdmitWaiting();
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::Nack(absl::Span<const uint64_t> ids,
                                          std::optional<absl::Duration> delay) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    errors = Take(ids, [&](Outstanding o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      Retry(std::move(o.record), o.attempt, delay, "nacked", now);
    });
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::DeadLetter(absl::Span<const uint64_t> ids,
                                                const std::string& reason) {
  std::vector<AckError> errors;
  {
    absl::MutexLock lock(&mu_);
    errors = Take(ids, [&](Outstanding o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      SendToDeadLetters(std::move(o.record), o.attempt,
                        reason.empty() ? "dead-lettered by the subscriber"
                                       : reason);
    });
  }
  Wake();
  return errors;
}

std::vector<AckError> GroupConsumer::Extend(absl::Span<const uint64_t> ids,
                                            absl::Duration deadline) {
  absl::MutexLock lock(&mu_);
  const absl::Time until = absl::Now() + deadline;
  return ForEachOutstanding(ids, [until](auto it) { it->second.deadline = until; });
}

void GroupConsumer::Tick(absl::Time now) {
  if (stop_.load()) return;
  const uint64_t first_unsent = sink_->FirstUnsentId();
  {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> expired;
    if (now >= next_deadline_scan_) {
      next_deadline_scan_ = now + kDeadlineScanInterval;
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
    }
    std::sort(expired.begin(), expired.end());
    for (uint64_t id : expired) {
      auto it = outstanding_.find(id);
      Outstanding o = std::move(it->second);
      outstanding_.erase(it);
      gone_.emplace(id, "its ack deadline passed and it was redelivered under "
                        "a new id");
      gone_order_.push_back(id);
      Retry(std::move(o.record), o.attempt, std::nullopt,
            "ack deadline passed", now);
    }
    std::vector<Redelivery> due;
    auto split = std::stable_partition(
        retries_.begin(), retries_.end(),
        [now](const Redelivery& r) { return r.due > now; });
    due.assign(std::make_move_iterator(split),
               std::make_move_iterator(retries_.end()));
    retries_.erase(split, retries_.end());
    std::stable_sort(due.begin(), due.end(),
                     [](const auto& a, const auto& b) { return a.due < b.due; });
    for (Redelivery& r : due) {
      if (r.attempt < 0) {
        SendToDeadLetters(std::move(r.record), -r.attempt,
                          "dead-letter write retried");
      } else {
        Send(std::move(r.record), r.attempt, now);
      }
    }
    AdmitWaiting();
    while (gone_order_.size() > kMaxGoneIds) {
      gone_.erase(gone_order_.front());
      gone_order_.pop_front();
    }
  }
  StoreOffsets();
}

void GroupConsumer::FlushDeliveries() {
  std::vector<Delivery> out;
  {
    absl::MutexLock lock(&mu_);
    if (to_send_.empty()) return;
    out.swap(to_send_);
    // A round's worth, so that the next round does not grow it step by step.
    to_send_.reserve(out.size());
  }
  sink_->Deliver(std::move(out));
}

void GroupConsumer::StoreOffsets() {
  RdKafkaTopicPartitionListPtr list(rd_kafka_topic_partition_list_new(0));
  {
    absl::MutexLock lock(&mu_);
    for (auto& [tp, state] : partitions_) {
      std::optional<int64_t> commit = state.tracker.CommitOffset();
      if (commit && commit != state.stored) {
        rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(),
                                          tp.partition)
            ->offset = *commit;
        state.stored = commit;
      }
    }
  }
  if (list->cnt == 0) return;
  rd_kafka_offsets_store(rk_.get(), list.get());
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = list->elems[i];
    auto it = partitions_.find(TopicPartitionRef{p.topic, p.partition});
    if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR && it != partitions_.end()) {
      it->second.stored.reset();  // try again on the next tick
    }
  }
}

bool GroupConsumer::OverLimit() const {
  return in_progress_messages_ >= options_.max_outstanding_messages ||
         in_progress_bytes_ >= options_.max_outstanding_bytes;
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
      PartitionState& state = partitions_[{p.topic, p.partition}];
      state = PartitionState();
      state.generation = next_generation_++;
      names.push_back(PartitionName(p.topic, p.partition));
    }
  }
  spdlog::info("group {}: assigned {}", options_.group, absl::StrJoin(names, ", "));
}

void GroupConsumer::OnRevoke(rd_kafka_topic_partition_list_t* partitions,
                             bool lost) {
  RdKafkaTopicPartitionListPtr commit(rd_kafka_topic_partition_list_new(0));
  std::vector<TopicPartition> revoked;
  {
    absl::MutexLock lock(&mu_);
    std::set<TopicPartition, TopicPartitionLess> set;
    for (int i = 0; i < partitions->cnt; ++i) {
      TopicPartition tp{partitions->elems[i].topic, partitions->elems[i].partition};
      auto it = partitions_.find(tp);
      if (it == partitions_.end()) continue;
      if (std::optional<int64_t> offset = it->second.tracker.CommitOffset();
          offset && !lost) {
        rd_kafka_topic_partition_list_add(commit.get(), tp.topic.c_str(),
                                          tp.partition)
            ->offset = *offset;
      }
      for (const auto& [key, queue] : it->second.held) {
        for (const auto& r : queue) {
          --in_progress_messages_;
          in_progress_bytes_ -= static_cast<int64_t>(r->Bytes());
        }
      }
      partitions_.erase(it);
      set.insert(tp);
      revoked.push_back(std::move(tp));
    }
    auto in_set = [&set](const InboundRecord& r) {
      return set.count(TopicPartitionRef{r.topic, r.partition}) > 0;
    };
    const std::string why = lost ? "its partition was lost (the group moved on)"
                                 : "its partition was revoked in a rebalance; "
                                   "the event goes to the partition's new owner";
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
      if (in_set(*it->second.record)) {
        --in_progress_messages_;
        in_progress_bytes_ -= static_cast<int64_t>(it->second.record->Bytes());
        gone_.emplace(it->first, why);
        gone_order_.push_back(it->first);
        outstanding_.erase(it++);
      } else {
        ++it;
      }
    }
    std::erase_if(retries_, [&](const Redelivery& r) {
      if (!in_set(*r.record)) return false;
      --in_progress_messages_;
      in_progress_bytes_ -= static_cast<int64_t>(r.record->Bytes());
      return true;
    });
    std::erase_if(to_send_, [&](const Delivery& d) { return in_set(*d.record); });
    std::erase_if(waiting_, [&](const std::shared_ptr<const InboundRecord>& r) {
      return in_set(*r);
    });
  }
  // Dead-letter writes in flight for these partitions finish on their own;
  // their completion no longer counts (the partition is not assigned).
  sink_->Revoked(revoked);
  if (commit->cnt > 0) {
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
