#include "client/cpp/subscriber.h"

#include <grpcpp/client_context.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "client/cpp/channel.h"
#include "client/cpp/status.h"

namespace eventbus::client {
namespace {

// How long Run waits for the server to end the stream after half-closing
// before it cancels the call.
constexpr absl::Duration kHalfCloseTimeout = absl::Seconds(30);
// Delivery ids handed out: the Run (modulo 2^20) in the bits above these, the
// server's id (unique on its stream) in these. The first Run's ids are the
// server's own.
constexpr int kServerIdBits = 44;
constexpr uint64_t kServerIdMask = (uint64_t{1} << kServerIdBits) - 1;
// The ack deadline asked for when the options leave it to the server but
// leases are extended.
constexpr absl::Duration kDefaultLeaseDeadline = absl::Seconds(30);
// Ids per modify_ack_deadline message, at most.
constexpr int kMaxIdsPerExtension = 5000;
// The server's initial metadata naming what it accepts (see the proto).
constexpr char kFeaturesMetadata[] = "eventbus-features";
constexpr char kFeatureModifyAckDeadline[] = "modify_ack_deadline";

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

}  // namespace

Subscriber::ReadBatch::ReadBatch()
    : arena(ReadArenaOptions()),
      response(google::protobuf::Arena::CreateMessage<v1::SubscribeResponse>(
          &arena)) {}

google::protobuf::ArenaOptions Subscriber::ReadBatch::ReadArenaOptions() {
  // Small first: a message at a low rate holds one delivery.
  google::protobuf::ArenaOptions options;
  options.start_block_size = 1 << 10;
  options.max_block_size = 64 << 10;
  return options;
}

// One Subscribe call, in the style of grpc's callback examples: the
// Subscriber's mutex guards the state, one read and one write are in flight
// at most, and a hold keeps the call open while acks may still be written
// from outside a reaction. Owned by Run, which deletes it after OnDone.
class Subscriber::Stream final
    : public grpc::ClientBidiReactor<v1::SubscribeRequest,
                                     v1::SubscribeResponse> {
 public:
  explicit Stream(Subscriber* subscriber) : s_(subscriber) {}

  void StartLocked(v1::SubscribeRequest subscription)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    s_->stub_->async()->Subscribe(&context_, this);
    AddHold();
    writing_ = std::move(subscription);
    write_pending_ = true;
    StartWrite(&writing_);
    StartNextReadLocked();
    StartCall();
  }

  // True while settlements can still be written.
  bool AcceptsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    return !half_close_ && !broken_ && !done_;
  }

  // Writes the settlements queued so far, then half-closes.
  void HalfCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    half_close_ = true;
    MaybeWriteLocked();
  }

  void Cancel() { context_.TryCancel(); }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    if (write_pending_ || broken_ || hold_released_) return;
    if (NextMessageLocked(&writing_)) {
      write_pending_ = true;
      StartWrite(&writing_);
      return;
    }
    if (half_close_ && !writes_done_) {
      writes_done_ = true;
      StartWritesDone();
      MaybeReleaseHoldLocked();
    }
  }

  bool done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) { return done_; }
  const absl::Status& status() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    return status_;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&s_->mu_);
    write_pending_ = false;
    writing_.Clear();
    if (!ok) broken_ = true;
    MaybeWriteLocked();
    MaybeReleaseHoldLocked();
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&s_->mu_);
    if (!ok) {
      broken_ = true;
      MaybeReleaseHoldLocked();
      return;
    }
    if (!metadata_checked_) {
      metadata_checked_ = true;
      s_->leases_on_ = s_->LeasePeriod() > absl::ZeroDuration() &&
                       AcceptsModifyAckDeadline();
      if (s_->LeasePeriod() > absl::ZeroDuration() && !s_->leases_on_) {
        spdlog::warn("eventbus subscriber: the sidecar does not accept "
                     "modify_ack_deadline (an older version); ack deadlines "
                     "are not extended on this stream");
      }
    }
    v1::SubscribeResponse& response = *reading_->response;
    s_->deliveries_ += response.deliveries_size();
    if (!s_->stop_requested_) {
      const bool lease = s_->leases_on_;
      const absl::Time now = s_->options_.clock->Now();
      for (v1::Delivery& d : *response.mutable_deliveries()) {
        if (lease) s_->leases_.Arrived(d.delivery_id(), now);
        d.set_delivery_id(s_->AppIdLocked(d.delivery_id()));
        s_->work_.push_back({reading_, &d});
      }
    }
    for (const v1::AckError& e : response.ack_errors()) {
      // Whatever the request was, the delivery is not outstanding on the
      // server (any more): extending it is pointless.
      s_->leases_.Settled(e.delivery_id());
      ++s_->ack_errors_;
      spdlog::warn("eventbus subscriber: the server could not settle delivery "
                   "{}: {}",
                   s_->AppIdLocked(e.delivery_id()),
                   FromProtoStatus(e.status()).ToString());
    }
    StartNextReadLocked();
  }

  // Whether the server's initial metadata lists modify_ack_deadline among
  // its features (see the proto). Valid once a read has completed.
  bool AcceptsModifyAckDeadline() {
    const auto& metadata = context_.GetServerInitialMetadata();
    auto [begin, end] = metadata.equal_range(kFeaturesMetadata);
    for (auto it = begin; it != end; ++it) {
      for (absl::string_view feature : absl::StrSplit(
               absl::string_view(it->second.data(), it->second.size()), ',')) {
        if (absl::StripAsciiWhitespace(feature) == kFeatureModifyAckDeadline) {
          return true;
        }
      }
    }
    return false;
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&s_->mu_);
    done_ = true;
    status_ = FromGrpcStatus(status);
  }

 private:
  // Moves the next batch of settlements into `out`: acks first, then the
  // lease extensions, then one group of nacks (same delay), then one group
  // of dead-letters (same reason). False when there is none.
  bool NextMessageLocked(v1::SubscribeRequest* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    if (!s_->acks_.empty()) {
      out->mutable_ack()->mutable_delivery_ids()->Add(s_->acks_.begin(),
                                                      s_->acks_.end());
      s_->acks_.clear();
      return true;
    }
    if (!s_->extend_.empty()) {
      v1::ModifyAckDeadline* m = out->mutable_modify_ack_deadline();
      while (!s_->extend_.empty() &&
             m->delivery_ids_size() < kMaxIdsPerExtension) {
        const uint64_t id = s_->extend_.front();
        s_->extend_.pop_front();
        // Settled since the round queued it: no longer leased.
        if (s_->leases_.leased(id)) m->add_delivery_ids(id);
      }
      if (m->delivery_ids_size() > 0) {
        *m->mutable_ack_deadline() = ToProto(s_->LeaseDeadline());
        return true;
      }
      out->clear_modify_ack_deadline();
    }
    if (!s_->nacks_.empty()) {
      auto it = s_->nacks_.begin();
      v1::Nack* nack = out->mutable_nack();
      nack->mutable_delivery_ids()->Add(it->second.begin(), it->second.end());
      if (it->first >= 0) {
        *nack->mutable_retry_delay() = ToProto(absl::Nanoseconds(it->first));
      }
      s_->nacks_.erase(it);
      return true;
    }
    if (!s_->dead_letters_.empty()) {
      auto it = s_->dead_letters_.begin();
      v1::DeadLetter* dl = out->mutable_dead_letter();
      dl->mutable_delivery_ids()->Add(it->second.begin(), it->second.end());
      dl->set_reason(it->first);
      s_->dead_letters_.erase(it);
      return true;
    }
    return false;
  }

  // Reads the next message into a batch of its own, which its deliveries
  // keep alive in work_ until they are handled.
  void StartNextReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    reading_ = std::make_shared<ReadBatch>();
    StartRead(reading_->response);
  }

  // RemoveHold from outside a reaction schedules OnDone on another thread,
  // and inside one it cannot be the last reference: never re-entrant.
  void MaybeReleaseHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    if (hold_released_ || !(writes_done_ || broken_)) return;
    hold_released_ = true;
    RemoveHold();
  }

  Subscriber* const s_;
  grpc::ClientContext context_;
  // Target of StartRead; touched only between StartRead and OnReadDone.
  std::shared_ptr<ReadBatch> reading_;
  // Passed to StartWrite; lives until OnWriteDone.
  v1::SubscribeRequest writing_ ABSL_GUARDED_BY(s_->mu_);
  bool write_pending_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool half_close_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool broken_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool done_ ABSL_GUARDED_BY(s_->mu_) = false;
  bool metadata_checked_ ABSL_GUARDED_BY(s_->mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(s_->mu_);
};

Subscriber::Subscriber(std::shared_ptr<grpc::Channel> channel,
                       SubscriberOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::EventBus::NewStub(channel_)),
      leases_(options_.max_lease_extension) {}

Subscriber::Subscriber(const std::string& address, SubscriberOptions options)
    : Subscriber(CreateChannel(address), std::move(options)) {}

Subscriber::~Subscriber() = default;

v1::SubscribeRequest Subscriber::SubscriptionRequest() const {
  v1::SubscribeRequest request;
  v1::Subscription* s = request.mutable_subscription();
  for (const std::string& t : options_.topics) s->add_topics(t);
  s->set_group(options_.group);
  s->set_start_position(options_.start);
  if (options_.start == v1::START_POSITION_TIME) {
    const int64_t ns = absl::ToUnixNanos(options_.start_time);
    s->mutable_start_time()->set_seconds(ns / 1000000000);
    s->mutable_start_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  s->set_max_outstanding_messages(options_.max_outstanding_messages);
  if (LeaseDeadline() > absl::ZeroDuration()) {
    *s->mutable_ack_deadline() = ToProto(LeaseDeadline());
  }
  s->set_max_delivery_attempts(options_.max_delivery_attempts);
  s->set_dead_letter_topic(options_.dead_letter_topic);
  s->set_ordering(options_.ordering);
  return request;
}

absl::Status Subscriber::Run(Handler handler) {
  auto stream = std::make_unique<Stream>(this);
  {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr) {
      return absl::FailedPreconditionError("Subscriber::Run is already running");
    }
    stream_ = stream.get();
    workers_stop_ = false;
    stream->StartLocked(SubscriptionRequest());
  }
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    running_workers_ = std::max(1, options_.concurrency);
  }
  for (int i = 0; i < std::max(1, options_.concurrency); ++i) {
    workers.emplace_back([this, &handler] { WorkerLoop(handler); });
  }
  {
    absl::MutexLock lock(&mu_);
    auto stop_or_end = [this, &stream]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_requested_ || stream->done();
    };
    AwaitLeasingLocked(absl::Condition(&stop_or_end));
    // Queued deliveries are not handled: they go back to the group when the
    // stream ends. Those being handled stay leased until their handlers
    // return.
    workers_stop_ = true;
    for (const Work& w : work_) {
      leases_.Settled(w.delivery->delivery_id() & kServerIdMask);
    }
    work_.clear();
    auto workers_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return running_workers_ == 0;
    };
    AwaitLeasingLocked(absl::Condition(&workers_done));
  }
  for (std::thread& t : workers) t.join();
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    stream->HalfCloseLocked();
    auto ended = [&stream]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stream->done();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ended), kHalfCloseTimeout)) {
      spdlog::warn("eventbus subscriber: the server did not end the stream "
                   "{} after the half-close; cancelling it",
                   absl::FormatDuration(kHalfCloseTimeout));
      stream->Cancel();
      mu_.Await(absl::Condition(&ended));
    }
    status = stream->status();
    stream_ = nullptr;
    run_ = (run_ + 1) & (~uint64_t{0} >> kServerIdBits);
    stop_requested_ = false;
    work_.clear();
    acks_.clear();
    nacks_.clear();
    dead_letters_.clear();
    leases_.Clear();
    extend_.clear();
    leases_on_ = false;
  }
  return status;
}

void Subscriber::WorkerLoop(const Handler& handler) {
  for (;;) {
    Work work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return workers_stop_ || stop_requested_ || !work_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (workers_stop_ || stop_requested_) {
        --running_workers_;
        return;
      }
      work = std::move(work_.front());
      work_.pop_front();
    }
    const v1::Delivery& delivery = *work.delivery;
    const absl::Status status = handler(delivery);
    if (!options_.auto_ack) continue;
    if (status.ok()) {
      Ack(delivery.delivery_id());
    } else {
      spdlog::debug("eventbus subscriber: handler failed for delivery {}: {}",
                    delivery.delivery_id(), status.ToString());
      Nack(delivery.delivery_id());
    }
  }
}

void Subscriber::Stop() {
  absl::MutexLock lock(&mu_);
  stop_requested_ = true;
}

absl::Duration Subscriber::LeaseDeadline() const {
  if (options_.ack_deadline > absl::ZeroDuration()) return options_.ack_deadline;
  return options_.max_lease_extension > absl::ZeroDuration()
             ? kDefaultLeaseDeadline
             : absl::ZeroDuration();
}

absl::Duration Subscriber::LeasePeriod() const {
  if (options_.max_lease_extension <= absl::ZeroDuration()) {
    return absl::ZeroDuration();
  }
  return LeaseDeadline() / 3;
}

void Subscriber::AwaitLeasingLocked(const absl::Condition& condition) {
  const absl::Duration period = LeasePeriod();
  if (period == absl::ZeroDuration()) {
    mu_.Await(condition);
    return;
  }
  while (!mu_.AwaitWithTimeout(condition, period)) {
    ExtendLeasesLocked(options_.clock->Now());
  }
}

void Subscriber::ExtendLeasesLocked(absl::Time now) {
  if (stream_ == nullptr || !stream_->AcceptsLocked()) return;
  // Every leased delivery every period: the first extension comes at most
  // one period after it arrived, two periods before the deadline the
  // server gave it when it sent it (three periods), whatever the delay.
  if (!leases_on_) return;
  std::vector<uint64_t> given_up;
  const std::vector<uint64_t> due = leases_.Due(now, &given_up);
  for (uint64_t id : given_up) {
    spdlog::warn("eventbus subscriber: delivery {} is still not settled "
                 "after {}; its ack deadline is no longer extended and it "
                 "will be redelivered",
                 AppIdLocked(id),
                 absl::FormatDuration(options_.max_lease_extension));
  }
  extend_.assign(due.begin(), due.end());
  stream_->MaybeWriteLocked();
}

void Subscriber::SettleLocked(uint64_t server_id) { leases_.Settled(server_id); }

uint64_t Subscriber::AppIdLocked(uint64_t server_id) const {
  return (run_ << kServerIdBits) | (server_id & kServerIdMask);
}

std::optional<uint64_t> Subscriber::ServerIdLocked(uint64_t delivery_id) const {
  if (stream_ == nullptr || !stream_->AcceptsLocked()) return std::nullopt;
  if ((delivery_id & ~kServerIdMask) != (run_ << kServerIdBits)) {
    spdlog::debug("eventbus subscriber: delivery {} belongs to an earlier "
                  "stream; not settled (the server redelivers it)",
                  delivery_id);
    return std::nullopt;
  }
  return delivery_id & kServerIdMask;
}

void Subscriber::Ack(uint64_t delivery_id) {
  absl::MutexLock lock(&mu_);
  const std::optional<uint64_t> id = ServerIdLocked(delivery_id);
  if (!id) return;
  SettleLocked(*id);
  acks_.push_back(*id);
  stream_->MaybeWriteLocked();
}

void Subscriber::Nack(uint64_t delivery_id,
                      std::optional<absl::Duration> delay) {
  absl::MutexLock lock(&mu_);
  const std::optional<uint64_t> id = ServerIdLocked(delivery_id);
  if (!id) return;
  const int64_t key =
      delay.has_value()
          ? absl::ToInt64Nanoseconds(std::max(*delay, absl::ZeroDuration()))
          : -1;
  SettleLocked(*id);
  nacks_[key].push_back(*id);
  stream_->MaybeWriteLocked();
}

void Subscriber::DeadLetter(uint64_t delivery_id, std::string reason) {
  absl::MutexLock lock(&mu_);
  const std::optional<uint64_t> id = ServerIdLocked(delivery_id);
  if (!id) return;
  SettleLocked(*id);
  dead_letters_[std::move(reason)].push_back(*id);
  stream_->MaybeWriteLocked();
}

int64_t Subscriber::ack_errors() const {
  absl::MutexLock lock(&mu_);
  return ack_errors_;
}

int64_t Subscriber::deliveries() const {
  absl::MutexLock lock(&mu_);
  return deliveries_;
}

}  // namespace eventbus::client
