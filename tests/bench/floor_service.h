#pragma once

// The gRPC floor: an EventBus service that answers every publish at once,
// without Kafka and without eventbus's own work (no validation, no
// encoding). It reads and writes the same messages the sidecar does, so
// what it costs per event is what gRPC and Protobuf cost on this machine,
// the bound any sidecar has to live with.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "eventbus/v1/eventbus.grpc.pb.h"

namespace eventbus::bench {

class FloorService final : public v1::EventBus::CallbackService {
 public:
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override {
    Answer(*request, response);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
  PublishStream(grpc::CallbackServerContext* /*context*/) override {
    return new Stream(this);
  }

 private:
  // Fills `response` as the sidecar would for a stored event.
  void Answer(const v1::PublishRequest& request, v1::PublishResponse* response) {
    response->set_correlation_id(request.correlation_id());
    response->set_event_id(request.event().id());
    response->set_topic(request.topic());
    response->set_partition(0);
    response->set_offset(next_offset_.fetch_add(1, std::memory_order_relaxed));
    response->mutable_status();
  }

  // Reads a batch, answers it with one write; reads go on while a write is
  // in flight (the client bounds how much it sends ahead).
  class Stream final : public grpc::ServerBidiReactor<v1::PublishBatchRequest,
                                                      v1::PublishBatchResponse> {
   public:
    explicit Stream(FloorService* service) : service_(service) {
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        reads_done_ = true;
        MaybeFinishLocked();
        return;
      }
      v1::PublishBatchResponse& out = pending_.emplace_back();
      out.mutable_responses()->Reserve(request_.requests_size());
      for (const v1::PublishRequest& r : request_.requests()) {
        service_->Answer(r, out.add_responses());
      }
      MaybeWriteLocked();
      StartRead(&request_);
    }

    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      write_pending_ = false;
      pending_.pop_front();
      if (!ok) {
        broken_ = true;
        pending_.clear();
      }
      MaybeWriteLocked();
      MaybeFinishLocked();
    }

    void OnDone() override { delete this; }

   private:
    void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (write_pending_ || broken_ || pending_.empty()) return;
      write_pending_ = true;
      StartWrite(&pending_.front());
    }
    void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_ || write_pending_ || !(reads_done_ || broken_)) return;
      finished_ = true;
      Finish(grpc::Status::OK);
    }

    FloorService* const service_;
    v1::PublishBatchRequest request_;
    absl::Mutex mu_;
    // Answers to write; the front one is being written while write_pending_.
    std::deque<v1::PublishBatchResponse> pending_ ABSL_GUARDED_BY(mu_);
    bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
    bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
    bool broken_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
  };

  std::atomic<int64_t> next_offset_{0};
};

}  // namespace eventbus::bench
