#pragma once

// A kafka::Consumer for unit tests of the Subscribe stream, the counterpart
// of FakeProducer: it records what the stream asks of it (acks, nacks,
// dead letters, extensions, stop, close), and the test plays the consumer's
// part through the DeliverySink the stream gave it: deliveries, revocations,
// failures.
//
// The stream owns its consumer and deletes it after Close; what the test
// inspects lives in a FakeConsumerState that both share.
//
// As GroupConsumer does, the fake calls the sink without holding the lock
// that its Consumer methods take: the stream may call Stop from inside a
// sink call (Failed ends the stream, which stops the consumer), and it
// holds its own lock while it does. A separate lock (sink_mu_) keeps sink
// calls one at a time and none after Close returns.

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kafka/consumer.h"

namespace eventbus::fakes {

class FakeConsumerState {
 public:
  struct Nack {
    std::vector<uint64_t> ids;
    std::optional<absl::Duration> delay;
  };
  struct DeadLetter {
    std::vector<uint64_t> ids;
    std::string reason;
  };
  struct Extend {
    std::vector<uint64_t> ids;
    absl::Duration deadline;
  };

  explicit FakeConsumerState(kafka::GroupConsumerOptions options,
                             kafka::DeliverySink* sink)
      : options_(std::move(options)), sink_(sink) {}

  const kafka::GroupConsumerOptions& options() const { return options_; }

  // --- The consumer's part, played by the test ---------------------------

  // Hands deliveries of `records` (ids from 1 up, each with `attempt`) to
  // the stream, in one Deliver call. Returns their ids. Nothing is
  // delivered once the consumer was closed.
  std::vector<uint64_t> Deliver(
      std::vector<std::shared_ptr<const kafka::InboundRecord>> records,
      int attempt = 1) ABSL_LOCKS_EXCLUDED(sink_mu_, mu_) {
    absl::MutexLock sink_lock(&sink_mu_);
    std::vector<kafka::Delivery> deliveries;
    std::vector<uint64_t> ids;
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      for (auto& r : records) {
        const uint64_t id = next_id_++;
        delivered_.insert(id);
        ids.push_back(id);
        deliveries.push_back(kafka::Delivery{id, attempt, std::move(r)});
      }
      closed = closed_;
    }
    if (!closed) sink_->Deliver(std::move(deliveries));
    return ids;
  }
  void Revoke(const std::vector<kafka::TopicPartition>& partitions)
      ABSL_LOCKS_EXCLUDED(sink_mu_, mu_) {
    absl::MutexLock sink_lock(&sink_mu_);
    if (!closed()) sink_->Revoked(partitions);
  }
  void Fail(absl::Status status) ABSL_LOCKS_EXCLUDED(sink_mu_, mu_) {
    absl::MutexLock sink_lock(&sink_mu_);
    if (!closed()) sink_->Failed(std::move(status));
  }
  uint64_t FirstUnsentId() ABSL_LOCKS_EXCLUDED(sink_mu_, mu_) {
    absl::MutexLock sink_lock(&sink_mu_);
    return closed() ? UINT64_MAX : sink_->FirstUnsentId();
  }

  // --- What the stream asked ---------------------------------------------

  std::vector<uint64_t> acked() const {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  std::vector<Nack> nacks() const {
    absl::MutexLock lock(&mu_);
    return nacks_;
  }
  std::vector<DeadLetter> dead_letters() const {
    absl::MutexLock lock(&mu_);
    return dead_letters_;
  }
  std::vector<Extend> extends() const {
    absl::MutexLock lock(&mu_);
    return extends_;
  }
  bool stopped() const {
    absl::MutexLock lock(&mu_);
    return stopped_;
  }
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  bool WaitClosed(absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&closed_), timeout);
  }
  bool WaitAcked(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return acked_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  bool WaitStopped(absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&stopped_), timeout);
  }
  // Waits until `n` ids were acked in all or the stream stopped the
  // consumer (after which it reads no more acks). Returns whether `n` were
  // acked.
  bool WaitAckedOrStopped(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return acked_.size() >= n || stopped_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return acked_.size() >= n;
  }

 private:
  friend class FakeConsumer;

  // Ids delivered and not yet acked, nacked or dead-lettered are accepted;
  // any other gets the error a GroupConsumer gives.
  std::vector<kafka::AckError> Settle(absl::Span<const uint64_t> ids,
                                      bool remove)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<kafka::AckError> errors;
    for (uint64_t id : ids) {
      if (delivered_.count(id) == 0) {
        errors.push_back(
            {id, id >= next_id_ || id == 0
                     ? absl::NotFoundError(absl::StrCat(
                           "delivery ", id, " was never sent on this stream"))
                     : absl::FailedPreconditionError(absl::StrCat(
                           "delivery ", id, " is no longer outstanding"))});
      } else if (remove) {
        delivered_.erase(id);
      }
    }
    return errors;
  }

  const kafka::GroupConsumerOptions options_;
  kafka::DeliverySink* const sink_;
  // Held across each call into sink_, and by Close: taken before mu_.
  absl::Mutex sink_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::set<uint64_t> delivered_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<Nack> nacks_ ABSL_GUARDED_BY(mu_);
  std::vector<DeadLetter> dead_letters_ ABSL_GUARDED_BY(mu_);
  std::vector<Extend> extends_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class FakeConsumer final : public kafka::Consumer {
 public:
  explicit FakeConsumer(std::shared_ptr<FakeConsumerState> state)
      : state_(std::move(state)) {}
  ~FakeConsumer() override { Close(); }

  std::vector<kafka::AckError> Ack(absl::Span<const uint64_t> ids) override {
    absl::MutexLock lock(&state_->mu_);
    std::vector<kafka::AckError> errors = state_->Settle(ids, true);
    for (uint64_t id : ids) state_->acked_.push_back(id);
    return errors;
  }
  std::vector<kafka::AckError> Nack(absl::Span<const uint64_t> ids,
                                    std::optional<absl::Duration> delay) override {
    absl::MutexLock lock(&state_->mu_);
    state_->nacks_.push_back({{ids.begin(), ids.end()}, delay});
    return state_->Settle(ids, true);
  }
  std::vector<kafka::AckError> DeadLetter(absl::Span<const uint64_t> ids,
                                          const std::string& reason) override {
    absl::MutexLock lock(&state_->mu_);
    state_->dead_letters_.push_back({{ids.begin(), ids.end()}, reason});
    return state_->Settle(ids, true);
  }
  std::vector<kafka::AckError> Extend(absl::Span<const uint64_t> ids,
                                      absl::Duration deadline) override {
    absl::MutexLock lock(&state_->mu_);
    state_->extends_.push_back({{ids.begin(), ids.end()}, deadline});
    return state_->Settle(ids, false);
  }
  void Stop() override {
    absl::MutexLock lock(&state_->mu_);
    state_->stopped_ = true;
  }
  // After it returns the sink is not called (a sink call in progress is
  // waited for), as GroupConsumer::Close promises.
  void Close() override {
    absl::MutexLock sink_lock(&state_->sink_mu_);
    absl::MutexLock lock(&state_->mu_);
    state_->stopped_ = true;
    state_->closed_ = true;
  }

 private:
  std::shared_ptr<FakeConsumerState> state_;
};

// Starts FakeConsumers for a Subscriptions object and keeps the state of
// each, in start order.
class FakeConsumers {
 public:
  // What Subscriptions calls to start a consumer.
  absl::StatusOr<std::unique_ptr<kafka::Consumer>> Start(
      kafka::GroupConsumerOptions options, kafka::DeliverySink* sink) {
    absl::MutexLock lock(&mu_);
    if (!refuse_.ok()) return refuse_;
    auto state = std::make_shared<FakeConsumerState>(std::move(options), sink);
    started_.push_back(state);
    return std::make_unique<FakeConsumer>(std::move(state));
  }

  // Start refuses with `status` from now on.
  void RefuseWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    refuse_ = std::move(status);
  }

  // The `index`-th consumer started, once it is (null after `timeout`).
  std::shared_ptr<FakeConsumerState> WaitStarted(size_t index,
                                                 absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto started = [this, index]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return started_.size() > index;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&started), timeout)) return nullptr;
    return started_[index];
  }

  size_t started() const {
    absl::MutexLock lock(&mu_);
    return started_.size();
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<FakeConsumerState>> started_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventbus::fakes
