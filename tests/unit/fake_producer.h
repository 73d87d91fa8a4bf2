#pragma once

// A kafka::Producer for unit tests of the gRPC layer, in the spirit of
// leveldb's fault-injection Env: it records every Produce call and delivers
// on its own thread, as librdkafka's poll thread would.
//
// Modes:
//   - refuse: Produce returns the given status (and destroys `done`);
//   - complete (the default): every accepted record is delivered, in Produce
//     order, on the delivery thread with the configured status, partition
//     and offset (the offset grows by one per record);
//   - hold: accepted records wait until the test calls Release().
// `done` is never called inline from Produce.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kafka/producer.h"
#include "kafka/record.h"

namespace eventbus::fakes {

class FakeProducer final : public kafka::Producer {
 public:
  // One Produce call as the fake saw it.
  struct Call {
    kafka::Record record;
    absl::Time deadline;
    absl::Status returned;  // what Produce returned
  };

  // Computes the outcome of the `index`-th accepted record (0-based).
  using ResultFn =
      std::function<kafka::DeliveryResult(const kafka::Record&, int64_t index)>;

  FakeProducer() : thread_([this] { DeliveryLoop(); }) {}

  FakeProducer(const FakeProducer&) = delete;
  FakeProducer& operator=(const FakeProducer&) = delete;

  // Delivers whatever is still held or queued, then stops the thread.
  ~FakeProducer() override {
    Release();
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  absl::Status Produce(kafka::Record record, absl::Time deadline,
                       kafka::DeliveryCallback done) override {
    absl::MutexLock lock(&mu_);
    Call& call = calls_.emplace_back();
    call.record = record;
    call.deadline = deadline;
    call.returned = refuse_;
    if (!refuse_.ok()) return refuse_;  // `done` is destroyed uncalled.
    Pending p{std::move(record), accepted_++, std::move(done)};
    ++outstanding_;
    max_outstanding_ = std::max(max_outstanding_, outstanding_);
    if (hold_) {
      held_.push_back(std::move(p));
    } else {
      queue_.push_back(std::move(p));
    }
    return absl::OkStatus();
  }

  bool Connected() const override { return true; }

  // --- Configuration -------------------------------------------------------

  // Produce refuses every record with `status` from now on; OK accepts again.
  void RefuseWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    refuse_ = std::move(status);
  }

  // Accepted records are delivered with `status` on `partition`, at offsets
  // `first_offset`, `first_offset + 1`, ... in Produce order. A non-OK
  // status is delivered with partition and offset -1.
  void CompleteWith(absl::Status status, int32_t partition = 0,
                    int64_t first_offset = 0) {
    CompleteWith([status, partition, first_offset](const kafka::Record&,
                                                   int64_t index) {
      kafka::DeliveryResult r;
      r.status = status;
      if (status.ok()) {
        r.partition = partition;
        r.offset = first_offset + index;
      }
      return r;
    });
  }
  void CompleteWith(ResultFn fn) {
    absl::MutexLock lock(&mu_);
    result_fn_ = std::move(fn);
  }

  // Accepted records wait for Release() from now on.
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }

  // Hands every held record to the delivery thread (in Produce order, or
  // reversed) and stops holding new ones when `keep_holding` is false.
  // Returns how many were released.
  size_t Release(bool keep_holding = false, bool reverse = false) {
    absl::MutexLock lock(&mu_);
    hold_ = keep_holding;
    const size_t n = held_.size();
    if (reverse) std::reverse(held_.begin(), held_.end());
    for (Pending& p : held_) queue_.push_back(std::move(p));
    held_.clear();
    return n;
  }

  // --- Observation ---------------------------------------------------------

  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  size_t produce_count() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  // Accepted records whose `done` has not returned yet.
  size_t outstanding() const {
    absl::MutexLock lock(&mu_);
    return outstanding_;
  }
  size_t max_outstanding() const {
    absl::MutexLock lock(&mu_);
    return max_outstanding_;
  }
  size_t held() const {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  // Records whose `done` has returned.
  size_t delivered() const {
    absl::MutexLock lock(&mu_);
    return delivered_;
  }

  // Waits until at least `n` Produce calls were made; false on timeout.
  bool WaitForProduceCount(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Waits until at least `n` records are held; false on timeout.
  bool WaitForHeld(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Waits until at least `n` deliveries have run; false on timeout.
  bool WaitForDelivered(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return delivered_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 private:
  struct Pending {
    kafka::Record record;
    int64_t index;
    kafka::DeliveryCallback done;
  };

  void DeliveryLoop() {
    for (;;) {
      Pending p;
      kafka::DeliveryResult result;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // stop_ and nothing left
        p = std::move(queue_.front());
        queue_.pop_front();
        result = result_fn_ ? result_fn_(p.record, p.index)
                            : kafka::DeliveryResult{absl::OkStatus(), 0,
                                                    p.index};
      }
      // Outside the lock: `done` may call back into the service, which may
      // Produce again.
      std::move(p.done)(std::move(result));
      absl::MutexLock lock(&mu_);
      --outstanding_;
      ++delivered_;
    }
  }

  mutable absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
  ResultFn result_fn_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Pending> held_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  int64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  size_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  size_t max_outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  size_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace eventbus::fakes
