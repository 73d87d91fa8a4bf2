#include "kafka/rdkafka_producer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "kafka/errors.h"

namespace eventbus::kafka {
namespace {

// What librdkafka carries for each record until its delivery report.
struct MessageContext {
  std::string value;  // librdkafka points into it (no copy), so it lives here
  DeliveryCallback done;
};

constexpr int kPollTimeoutMs = 20;
constexpr int kMetadataTimeoutMs = 1500;
// How long an answer from a broker (a metadata probe, an acknowledged
// delivery) counts as Kafka being reachable. Probes can keep going to one
// hung broker (a paused process, a stalled network: its connection stays up
// until librdkafka's request timeout) while the others are fine, and while
// that broker's partitions hold up every client, no ack comes either: one
// such broker must not turn health off fleet-wide. A cluster that is down
// is known at once from librdkafka's all-brokers-down; one that hangs
// entirely goes NOT_SERVING after this window.
constexpr absl::Duration kAnswerWindow = absl::Seconds(10);
constexpr absl::Duration kPurgeDrainLimit = absl::Seconds(10);
// Re-creating a producer Kafka refused (its user may not write): after 1 s,
// doubling up to this, so that a misconfigured user does not re-create the
// producer, and log it, several times a second.
constexpr absl::Duration kMaxRefusedBackoff = absl::Seconds(30);

bool IsAuthorizationError(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

absl::Status RefusedStatus(int refused, absl::string_view topic) {
  return absl::PermissionDeniedError(absl::StrCat(
      "Kafka refused the sidecar's producer (",
      rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(refused)),
      "): the event for topic \"", topic,
      "\" was not written; the sidecar's Kafka user needs Write on the topic "
      "(the idempotent producer needs Write on at least one topic)"));
}

void LogCallback(const rd_kafka_t* rk, int level, const char* fac,
                 const char* buf) noexcept {
  spdlog::level::level_enum lvl = spdlog::level::debug;
  if (level <= 3) {
    lvl = spdlog::level::err;
  } else if (level == 4) {
    lvl = spdlog::level::warn;
  } else if (level <= 6) {
    lvl = spdlog::level::info;
  }
  spdlog::log(lvl, "librdkafka {} {}: {}", rd_kafka_name(rk), fac, buf);
}

}  // namespace

bool IsRdKafkaProperty(absl::string_view name) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  // Only the name matters: an unknown one is RD_KAFKA_CONF_UNKNOWN whatever
  // the value; a known one may still reject this value (CONF_INVALID).
  return rd_kafka_conf_set(conf.get(), std::string(name).c_str(), "", errstr,
                           sizeof(errstr)) != RD_KAFKA_CONF_UNKNOWN;
}

bool IsSecretProperty(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (absl::string_view marker :
       {"password", "secret", "ssl.key.pem", "ssl_key", "sasl.jaas",
        "oauthbearer.config", "token"}) {
    if (absl::StrContains(lower, marker)) return true;
  }
  return false;
}

absl::StatusOr<RdKafkaConfPtr> MakeRdKafkaConf(
    const std::map<std::string, std::string>& properties) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  for (const auto& [name, value] : properties) {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      if (IsSecretProperty(name)) {
        std::string why = errstr;
        if (!value.empty()) absl::StrReplaceAll({{value, "(redacted)"}}, &why);
        return absl::InvalidArgumentError(absl::StrCat(
            "librdkafka property \"", name, "\" (value redacted): ", why));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "librdkafka property \"", name, "\"=\"", value, "\": ", errstr));
    }
  }
  rd_kafka_conf_set_log_cb(conf.get(), &LogCallback);
  return conf;
}

absl::StatusOr<std::unique_ptr<RdKafkaProducer>> RdKafkaProducer::Create(
    ProducerOptions options) {
  std::unique_ptr<RdKafkaProducer> producer(
      new RdKafkaProducer(std::move(options)));
  absl::StatusOr<Handle> rk = producer->NewHandle();
  if (!rk.ok()) return rk.status();
  {
    absl::MutexLock lock(&producer->mu_);
    producer->rk_ = *std::move(rk);
    producer->current_rk_.store(producer->rk_.get());
  }
  producer->poll_thread_ = std::thread([p = producer.get()] {
    pthread_setname_np(pthread_self(), "eb-producer");
    p->PollLoop();
  });
  producer->monitor_thread_ =
      std::thread([p = producer.get()] {
        pthread_setname_np(pthread_self(), "eb-kafka-check");
        p->MonitorLoop();
      });
  return producer;
}

RdKafkaProducer::RdKafkaProducer(ProducerOptions options)
    : options_(std::move(options)) {
  auto it = options_.properties.find("bootstrap.servers");
  if (it != options_.properties.end()) brokers_ = it->second;
}

RdKafkaProducer::~RdKafkaProducer() {
  Shutdown(absl::ZeroDuration()).IgnoreError();
}

absl::StatusOr<RdKafkaProducer::Handle> RdKafkaProducer::NewHandle() {
  absl::StatusOr<RdKafkaConfPtr> conf = MakeRdKafkaConf(options_.properties);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(conf->get(), this);
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &RdKafkaProducer::DeliveryReport);
  rd_kafka_conf_set_error_cb(conf->get(), &RdKafkaProducer::ErrorCallback);
  if (options_.on_statistics) {
    rd_kafka_conf_set_stats_cb(conf->get(), &RdKafkaProducer::StatsCallback);
  }
  char errstr[512];
  rd_kafka_t* rk =
      rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof(errstr));
  if (rk == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create the Kafka producer: ", errstr));
  }
  conf->release();  // rd_kafka_new owns it now
  return Handle(rk, RdKafkaDeleter());
}

void RdKafkaProducer::DeliveryReport(rd_kafka_t* /*rk*/,
                                     const rd_kafka_message_t* msg,
                                     void* opaque) noexcept {
  std::unique_ptr<MessageContext> ctx(
      static_cast<MessageContext*>(msg->_private));
  DeliveryResult result;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    static_cast<RdKafkaProducer*>(opaque)->last_answer_ns_.store(
        absl::GetCurrentTimeNanos(), std::memory_order_relaxed);
    result.partition = msg->partition;
    // Negative (RD_KAFKA_OFFSET_INVALID) when librdkafka learned the record
    // was stored from the ack of a later request after this one's timed out.
    result.offset = msg->offset >= 0 ? msg->offset : -1;
    // Read first: a store on every delivery would bounce the cache line
    // between the delivery and the publish threads.
    auto& refused = static_cast<RdKafkaProducer*>(opaque)->refused_;
    if (refused.load(std::memory_order_relaxed) != 0) refused.store(0);
  } else {
    const bool possibly_persisted =
        rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
    const int refused = static_cast<RdKafkaProducer*>(opaque)->refused_.load();
    const bool purged = msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                        msg->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
                        msg->err == RD_KAFKA_RESP_ERR__FATAL;
    result.status =
        purged && refused != 0 && !possibly_persisted
            ? RefusedStatus(refused, rd_kafka_topic_name(msg->rkt))
            : DeliveryErrorToStatus(msg->err, rd_kafka_topic_name(msg->rkt),
                                    possibly_persisted);
  }
  std::move(ctx->done)(std::move(result));
}

void RdKafkaProducer::ErrorCallback(rd_kafka_t* rk, int err,
                                    const char* reason, void* opaque) noexcept {
  auto* self = static_cast<RdKafkaProducer*>(opaque);
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    if (rk != self->current_rk_.load()) return;
    if (IsAuthorizationError(orig)) {
      self->refused_.store(orig);
      spdlog::error(
          "Kafka refused the producer ({}: {}): publishes fail with "
          "PERMISSION_DENIED; the sidecar's Kafka user needs Write on the "
          "topics it publishes to; trying again with back-off",
          rd_kafka_err2name(orig), fatal);
    } else {
      self->refused_.store(0);
      spdlog::error("Kafka producer fatal error {}: {}; re-creating the producer",
                    rd_kafka_err2name(orig), fatal);
    }
    self->fatal_.store(true);
    return;
  }
  // A handle being purged after a fatal error says nothing of the brokers.
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && rk == self->current_rk_.load()) {
    self->all_down_ns_.store(absl::GetCurrentTimeNanos());
    self->connected_.store(false, std::memory_order_release);
  }
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    // Retried by librdkafka; the sidecar stays NOT_SERVING meanwhile.
    spdlog::error(
        "Kafka authentication failed: {} (check kafka.sasl.* and kafka.ssl.*)",
        reason);
    return;
  }
  spdlog::warn("Kafka producer: {}: {}",
               rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)),
               reason);
}

RdKafkaProducer::Handle RdKafkaProducer::CurrentHandle() const {
  absl::MutexLock lock(&mu_);
  return rk_;
}

int RdKafkaProducer::ProduceNow(rd_kafka_t* rk, Record& record,
                                DeliveryCallback& done) {
  auto ctx = std::make_unique<MessageContext>();
  ctx->value = std::move(record.value);
  ctx->done = std::move(done);
  rd_kafka_headers_t* headers = nullptr;
  if (!record.headers.empty()) {
    headers = rd_kafka_headers_new(record.headers.size());
    for (const Header& h : record.headers) {
      rd_kafka_header_add(headers, h.name.data(),
                          static_cast<ssize_t>(h.name.size()), h.value.data(),
                          static_cast<ssize_t>(h.value.size()));
    }
  }
  const void* key = record.key ? record.key->data() : nullptr;
  const size_t key_len = record.key ? record.key->size() : 0;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(record.topic.c_str()),
      RD_KAFKA_V_VALUE(ctx->value.data(), ctx->value.size()),
      RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_HEADERS(headers),
      RD_KAFKA_V_OPAQUE(ctx.get()), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (headers != nullptr) rd_kafka_headers_destroy(headers);
    record.value = std::move(ctx->value);
    done = std::move(ctx->done);
    return err;
  }
  ctx.release();  // freed by DeliveryReport
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

absl::Status RdKafkaProducer::Produce(Record record, absl::Time deadline,
                                      DeliveryCallback done) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return absl::UnavailableError(
        "eventbus is shutting down and takes no new events");
  }
  // Kafka refused the producer and the next attempt is backing off: fail
  // now rather than wait for it.
  if (const int refused = refused_.load(); refused != 0 && fatal_.load()) {
    return RefusedStatus(refused, record.topic);
  }
  if (waiting_.empty() && Connected()) {
    int err = ProduceNow(rk_.get(), record, done);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
    // _FATAL: the handle failed; the poll thread re-creates it (the error
    // callback tells it) and the record waits for the new one.
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL && err != RD_KAFKA_RESP_ERR__FATAL) {
      return DeliveryErrorToStatus(static_cast<rd_kafka_resp_err_t>(err),
                                   record.topic, false);
    }
  }
  const size_t bytes = record.PayloadBytes();
  if (waiting_bytes_ + bytes > options_.max_waiting_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the sidecar's publish buffer is full (", waiting_bytes_,
        " bytes wait for ", Connected() ? "room in the producer queue" : "a broker",
        ", limits.max_buffered_bytes); retry later"));
  }
  waiting_bytes_ += bytes;
  waiting_.push_back(Waiting{std::move(record), deadline, std::move(done)});
  return absl::OkStatus();
}

void RdKafkaProducer::ServeWaiting(absl::Time now) {
  std::vector<std::pair<DeliveryCallback, absl::Status>> failed;
  {
    absl::MutexLock lock(&mu_);
    if (waiting_.empty()) return;
    const bool connected = Connected();
    while (connected && !waiting_.empty()) {
      Waiting& w = waiting_.front();
      const size_t bytes = w.record.PayloadBytes();
      int err = ProduceNow(rk_.get(), w.record, w.done);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      if (err == RD_KAFKA_RESP_ERR__FATAL) break;  // waits for the new handle
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        failed.emplace_back(
            std::move(w.done),
            DeliveryErrorToStatus(static_cast<rd_kafka_resp_err_t>(err),
                                  w.record.topic, false));
      }
      waiting_bytes_ -= bytes;
      waiting_.pop_front();
    }
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      absl::Status status =
          connected
              ? absl::ResourceExhaustedError(absl::StrCat(
                    "the producer queue stayed full until the deadline "
                    "(kafka.producer.queue.buffering.max.messages/kbytes); "
                    "the event for topic \"",
                    it->record.topic, "\" was not written"))
              : absl::UnavailableError(absl::StrCat(
                    "no Kafka broker reachable within the deadline (brokers: ",
                    brokers_, "); the event for topic \"", it->record.topic,
                    "\" was not written"));
      failed.emplace_back(std::move(it->done), std::move(status));
      waiting_bytes_ -= it->record.PayloadBytes();
      it = waiting_.erase(it);
    }
  }
  for (auto& [done, status] : failed) {
    DeliveryResult result;
    result.status = std::move(status);
    std::move(done)(std::move(result));
  }
}

void RdKafkaProducer::FailAllWaiting(const absl::Status& status) {
  std::deque<Waiting> waiting;
  {
    absl::MutexLock lock(&mu_);
    waiting.swap(waiting_);
    waiting_bytes_ = 0;
  }
  for (Waiting& w : waiting) {
    DeliveryResult result;
    result.status = status;
    std::move(w.done)(std::move(result));
  }
}

void RdKafkaProducer::PurgeAndDrain(rd_kafka_t* rk) {
  rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  const absl::Time limit = absl::Now() + kPurgeDrainLimit;
  while (rd_kafka_outq_len(rk) > 0 && absl::Now() < limit) {
    rd_kafka_poll(rk, kPollTimeoutMs);
  }
}

void RdKafkaProducer::Recreate() {
  absl::StatusOr<Handle> fresh = NewHandle();
  if (!fresh.ok()) {
    spdlog::error("cannot re-create the Kafka producer: {}; retrying",
                  fresh.status().ToString());
    fatal_.store(true);
    return;
  }
  Handle old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(rk_, *std::move(fresh));
    current_rk_.store(rk_.get());
  }
  // The old handle's records fail (not written, or possibly written for
  // those in flight) as their delivery reports are served by ServeRetired,
  // while the new handle takes the traffic.
  rd_kafka_purge(old.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  retired_.push_back({std::move(old), absl::Now()});
  recreations_.fetch_add(1);
  spdlog::info("Kafka producer re-created after a fatal error");
}

void RdKafkaProducer::ServeRetired(absl::Time now) {
  for (auto it = retired_.begin(); it != retired_.end();) {
    rd_kafka_t* rk = it->rk.get();
    rd_kafka_poll(rk, 0);
    const int left = rd_kafka_outq_len(rk);
    if (left == 0) {
      it = retired_.erase(it);
      continue;
    }
    if (!it->warned && now - it->since > kPurgeDrainLimit) {
      it->warned = true;
      spdlog::warn("the Kafka producer replaced after a fatal error still has "
                   "{} records or requests without an outcome after {}; "
                   "waiting for them",
                   left, absl::FormatDuration(kPurgeDrainLimit));
    }
    ++it;
  }
}

void RdKafkaProducer::PollLoop() {
  while (true) {
    Handle rk = CurrentHandle();
    rd_kafka_poll(rk.get(), kPollTimeoutMs);
    if (fatal_.load() && absl::GetCurrentTimeNanos() >= recreate_after_ns_) {
      fatal_.store(false);
      Recreate();
      if (refused_.load() != 0) {
        const absl::Duration backoff = std::min(
            kMaxRefusedBackoff, absl::Seconds(1) * (1 << std::min(refusals_++, 5)));
        recreate_after_ns_ =
            absl::GetCurrentTimeNanos() + absl::ToInt64Nanoseconds(backoff);
      } else {
        refusals_ = 0;
        recreate_after_ns_ = 0;
      }
      continue;
    }
    const absl::Time now = absl::Now();
    ServeRetired(now);
    ServeWaiting(now);
    bool drained = false;
    bool past_deadline = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        drained = waiting_.empty() && rd_kafka_outq_len(rk.get()) == 0 &&
                  retired_.empty();
        past_deadline = now >= drain_deadline_;
      }
    }
    if (drained) return;
    if (past_deadline) {
      size_t left = rd_kafka_outq_len(rk.get());
      for (const Retired& r : retired_) left += rd_kafka_outq_len(r.rk.get());
      {
        absl::MutexLock lock(&mu_);
        left += waiting_.size();
      }
      undelivered_at_shutdown_.store(left);
      FailAllWaiting(absl::UnavailableError(
          "eventbus shut down before the event could be written; it was not "
          "written"));
      PurgeAndDrain(rk.get());
      for (Retired& r : retired_) PurgeAndDrain(r.rk.get());
      retired_.clear();
      return;
    }
  }
}

void RdKafkaProducer::MonitorLoop() {
  while (true) {
    Handle rk = CurrentHandle();
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(rk.get(), 0, nullptr, &md, kMetadataTimeoutMs);
    RdKafkaMetadataPtr owned(md);
    rk.reset();
    const int64_t now = absl::GetCurrentTimeNanos();
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md != nullptr && md->broker_cnt > 0) {
      last_answer_ns_.store(now, std::memory_order_relaxed);
    }
    const int64_t last = last_answer_ns_.load(std::memory_order_relaxed);
    const bool up = last > all_down_ns_.load() &&
                    now - last < absl::ToInt64Nanoseconds(kAnswerWindow);
    const bool was = connected_.exchange(up, std::memory_order_acq_rel);
    if (up != was) {
      if (up) {
        spdlog::info("Kafka is reachable ({})", brokers_);
      } else {
        spdlog::warn("Kafka is not reachable ({}): {}", brokers_,
                     err == RD_KAFKA_RESP_ERR_NO_ERROR ? "every broker is down"
                                                       : rd_kafka_err2str(err));
      }
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR && up) {
      spdlog::debug("Kafka metadata probe failed ({}); other brokers answered "
                    "within {}", rd_kafka_err2str(err),
                    absl::FormatDuration(kAnswerWindow));
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return monitor_stop_;
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop),
                             err == RD_KAFKA_RESP_ERR_NO_ERROR
                                 ? options_.connect_check_interval
                                 : options_.connect_check_interval / 4)) {
      return;
    }
  }
}

int RdKafkaProducer::StatsCallback(rd_kafka_t*, char* json, size_t json_len,
                                   void* opaque) noexcept {
  auto* self = static_cast<RdKafkaProducer*>(opaque);
  absl::StatusOr<RdKafkaStats> stats =
      ParseRdKafkaStats(absl::string_view(json, json_len));
  if (stats.ok()) self->options_.on_statistics(*stats);
  return 0;  // librdkafka frees `json`
}

RdKafkaProducer::Queues RdKafkaProducer::QueueDepths() const {
  Queues q;
  absl::MutexLock lock(&mu_);
  q.waiting = waiting_.size();
  q.waiting_bytes = waiting_bytes_;
  if (rk_ != nullptr) q.librdkafka = rd_kafka_outq_len(rk_.get());
  return q;
}

void RdKafkaProducer::BeginShutdown(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  drain_deadline_ = std::min(drain_deadline_, deadline);
}

absl::Status RdKafkaProducer::Shutdown(absl::Duration timeout) {
  BeginShutdown(absl::Now() + timeout);
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return shutdown_status_;
  }
  if (poll_thread_.joinable()) poll_thread_.join();
  {
    absl::MutexLock lock(&mu_);
    monitor_stop_ = true;
  }
  if (monitor_thread_.joinable()) monitor_thread_.join();
  absl::MutexLock lock(&mu_);
  rk_.reset();
  current_rk_.store(nullptr);
  connected_.store(false);
  shut_down_ = true;
  const size_t left = undelivered_at_shutdown_.load();
  shutdown_status_ =
      left == 0 ? absl::OkStatus()
                : absl::DeadlineExceededError(absl::StrCat(
                      left, " events were not delivered within the shutdown "
                            "grace period"));
  return shutdown_status_;
}

absl::Status RdKafkaProducer::TriggerFatalErrorForTesting(
    absl::string_view reason) {
  Handle rk = CurrentHandle();
  if (!rk) return absl::FailedPreconditionError("producer is shut down");
  rd_kafka_resp_err_t err = rd_kafka_test_fatal_error(
      rk.get(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
      std::string(reason).c_str());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(rd_kafka_err2str(err));
  }
  return absl::OkStatus();
}

}  // namespace eventbus::kafka
