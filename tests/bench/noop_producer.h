#pragma once

// A kafka::Producer that writes nothing: every accepted record is completed
// with OK right away, by one dedicated thread that takes whatever has
// queued up since its last pass and completes it as a batch (as librdkafka's
// poll thread serves a batch of delivery reports). Put behind an
// EventBusService it gives the gRPC floor: what the sidecar costs when Kafka
// costs nothing.

#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kafka/producer.h"
#include "kafka/record.h"

namespace eventbus::bench {

class NoopProducer final : public kafka::Producer {
 public:
  NoopProducer() : thread_([this] { Loop(); }) {}
  NoopProducer(const NoopProducer&) = delete;
  NoopProducer& operator=(const NoopProducer&) = delete;

  // Completes whatever is queued, then stops the thread. Every `done` has
  // run when it returns.
  ~NoopProducer() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  // Never refuses; `done` runs later on the completion thread, never inline.
  absl::Status Produce(kafka::Record /*record*/, absl::Time /*deadline*/,
                       kafka::DeliveryCallback done) override {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(done));
    return absl::OkStatus();
  }

  bool Connected() const override { return true; }

 private:
  void Loop() {
    std::vector<kafka::DeliveryCallback> batch;
    int64_t offset = 0;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // stopping, and nothing left
        batch.swap(queue_);
      }
      // Outside the lock: `done` calls back into the service, which may
      // Produce again.
      for (kafka::DeliveryCallback& done : batch) {
        std::move(done)(kafka::DeliveryResult{absl::OkStatus(), 0, offset++});
      }
      batch.clear();
    }
  }

  absl::Mutex mu_;
  std::vector<kafka::DeliveryCallback> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace eventbus::bench
