#pragma once

// The gRPC floor: an EventBus service that answers every publish at once,
// and feeds every Subscribe stream copies of one delivery as fast as the
// client acks them, without Kafka and without eventbus's own work (no
// validation, no encoding or decoding of records). It reads and writes the
// same messages the sidecar does, so what it costs per event is what gRPC
// and Protobuf cost on this machine, the bound any sidecar has to live with.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "eventbus/v1/eventbus.grpc.pb.h"

namespace eventbus::bench {

class FloorService final : public v1::EventBus::CallbackService {
 public:
  // `source` and `type`: the attributes of the bench's events.
  FloorService(std::string source, std::string type)
      : source_(std::move(source)),
        type_(std::move(type)),
        answerer_([this] { AnswerLoop(); }) {}

  ~FloorService() override {
    {
      absl::MutexLock lock(&answer_mu_);
      stopping_ = true;
    }
    answerer_.join();
  }

  // With client metadata kAnswerFromThread, the call is finished from a
  // thread of the floor's own instead of inside gRPC's handler: as the
  // sidecar finishes a call from librdkafka's delivery-report thread. What
  // that costs next to the plain floor is what gRPC charges for finishing a
  // call from outside its threads, which the sidecar cannot avoid.
  static constexpr char kAnswerFromThread[] = "eventbus-bench-answer-from-thread";

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override {
    Answer(*request, response);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (context->client_metadata().count(kAnswerFromThread) > 0) {
      absl::MutexLock lock(&answer_mu_);
      to_answer_.push_back(reactor);
      return reactor;
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
  PublishStream(grpc::CallbackServerContext* /*context*/) override {
    return (new Stream(this))->Start();
  }

  grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>*
  Subscribe(grpc::CallbackServerContext* /*context*/) override {
    return (new Feed(this))->Start();
  }

 private:
  // The sidecar's defaults: outstanding deliveries, deliveries per write.
  static constexpr int kMaxOutstanding = 1000;
  static constexpr int kPerWrite = 500;

  // The delivery the sidecar would send for one of the bench's records on
  // `topic`, whose name ends in "-<data bytes>".
  v1::Delivery Template(const std::string& topic) const {
    size_t payload = 100;
    if (size_t dash = topic.rfind('-'); dash != std::string::npos) {
      if (!absl::SimpleAtoi(topic.substr(dash + 1), &payload)) payload = 100;
    }
    v1::Delivery d;
    d.set_topic(topic);
    d.set_attempt(1);
    v1::Event* e = d.mutable_event();
    e->set_source(source_);
    e->set_type(type_);
    e->set_spec_version("1.0");
    e->set_data_content_type("application/octet-stream");
    e->set_data(std::string(payload, 'x'));
    const int64_t now_ns = absl::GetCurrentTimeNanos();
    e->mutable_time()->set_seconds(now_ns / 1000000000);
    e->mutable_time()->set_nanos(static_cast<int32_t>(now_ns % 1000000000));
    *d.mutable_record_time() = e->time();
    return d;
  }

  // One bidi stream of the floor: reads go on while a write is in flight;
  // the stream ends OK once the client half-closed and no write is left.
  // Subclasses say what a request does and what to write next.
  template <typename Request, typename Response>
  class Reactor : public grpc::ServerBidiReactor<Request, Response> {
   public:
    // Called by the factory once the object is complete.
    Reactor* Start() {
      this->StartRead(&request_);
      return this;
    }

    void OnReadDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        reads_done_ = true;
        MaybeFinishLocked();
        return;
      }
      HandleLocked(request_);
      MaybeWriteLocked();
      this->StartRead(&request_);
    }

    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      write_pending_ = false;
      if (!ok) broken_ = true;
      WrittenLocked();
      MaybeWriteLocked();
      MaybeFinishLocked();
    }

    void OnDone() override { delete this; }

   protected:
    virtual void HandleLocked(const Request& request) = 0;
    // The next message to write, or null.
    virtual const Response* NextLocked() = 0;
    // After each write, whether it went out or not.
    virtual void WrittenLocked() = 0;

    absl::Mutex mu_;
    bool reads_done_ = false;
    bool broken_ = false;

   private:
    void MaybeWriteLocked() {
      if (write_pending_ || broken_) return;
      const Response* next = NextLocked();
      if (next == nullptr) return;
      write_pending_ = true;
      this->StartWrite(next);
    }
    void MaybeFinishLocked() {
      if (finished_ || write_pending_ || !(reads_done_ || broken_)) return;
      finished_ = true;
      this->Finish(grpc::Status::OK);
    }

    Request request_;
    bool write_pending_ = false;
    bool finished_ = false;
  };

  // Subscribe: after the subscription, writes copies of the template (each
  // with its own id, offset and key) up to kMaxOutstanding not yet settled,
  // kPerWrite per write; acks, nacks and dead-letters only free room.
  class Feed final : public Reactor<v1::SubscribeRequest, v1::SubscribeResponse> {
   public:
    explicit Feed(FloorService* service) : service_(service) {}

   private:
    void HandleLocked(const v1::SubscribeRequest& request) override {
      switch (request.request_case()) {
        case v1::SubscribeRequest::kSubscription:
          if (request.subscription().topics_size() > 0) {
            template_ = service_->Template(request.subscription().topics(0));
            subscribed_ = true;
          }
          break;
        case v1::SubscribeRequest::kAck:
          outstanding_ -= request.ack().delivery_ids_size();
          break;
        case v1::SubscribeRequest::kNack:
          outstanding_ -= request.nack().delivery_ids_size();
          break;
        case v1::SubscribeRequest::kDeadLetter:
          outstanding_ -= request.dead_letter().delivery_ids_size();
          break;
        default:
          break;
      }
    }

    const v1::SubscribeResponse* NextLocked() override {
      if (reads_done_ || !subscribed_) return nullptr;
      const int n = std::min(kMaxOutstanding - outstanding_, kPerWrite);
      if (n <= 0) return nullptr;
      auto* out = google::protobuf::Arena::CreateMessage<v1::SubscribeResponse>(&arena_);
      for (int i = 0; i < n; ++i) {
        const uint64_t id = ++next_id_;
        v1::Delivery* d = out->add_deliveries();
        *d = template_;
        d->set_delivery_id(id);
        d->set_partition(static_cast<int32_t>(id % 6));
        d->set_offset(static_cast<int64_t>(id));
        d->set_key(absl::StrCat("key-", id % 1024));
        d->mutable_event()->set_id(absl::StrCat("bench-", id));
      }
      outstanding_ += n;
      return out;
    }

    void WrittenLocked() override { arena_.Reset(); }

    FloorService* const service_;
    google::protobuf::Arena arena_;
    v1::Delivery template_;
    bool subscribed_ = false;
    int outstanding_ = 0;
    uint64_t next_id_ = 0;
  };

  // Fills `response` as the sidecar would for a stored event.
  void Answer(const v1::PublishRequest& request, v1::PublishResponse* response) {
    response->set_correlation_id(request.correlation_id());
    response->set_event_id(request.event().id());
    response->set_topic(request.topic());
    response->set_partition(0);
    response->set_offset(next_offset_.fetch_add(1, std::memory_order_relaxed));
    response->mutable_status();
  }

  // Answers each batch read with one write.
  class Stream final
      : public Reactor<v1::PublishBatchRequest, v1::PublishBatchResponse> {
   public:
    explicit Stream(FloorService* service) : service_(service) {}

   private:
    void HandleLocked(const v1::PublishBatchRequest& request) override {
      v1::PublishBatchResponse& out = pending_.emplace_back();
      out.mutable_responses()->Reserve(request.requests_size());
      for (const v1::PublishRequest& r : request.requests()) {
        service_->Answer(r, out.add_responses());
      }
    }
    const v1::PublishBatchResponse* NextLocked() override {
      return pending_.empty() ? nullptr : &pending_.front();
    }
    void WrittenLocked() override {
      pending_.pop_front();
      if (broken_) pending_.clear();
    }

    FloorService* const service_;
    // Answers to write; the front one is being written while one is.
    std::deque<v1::PublishBatchResponse> pending_;
  };

  // Finishes the calls queued by Publish, all that are waiting at a time,
  // like a delivery-report callback serving a batch of reports.
  void AnswerLoop() {
    for (;;) {
      std::vector<grpc::ServerUnaryReactor*> batch;
      {
        absl::MutexLock lock(&answer_mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(answer_mu_) {
          return stopping_ || !to_answer_.empty();
        };
        answer_mu_.Await(absl::Condition(&ready));
        if (to_answer_.empty()) return;
        batch.swap(to_answer_);
      }
      for (grpc::ServerUnaryReactor* reactor : batch) reactor->Finish(grpc::Status::OK);
    }
  }

  const std::string source_;
  const std::string type_;
  std::atomic<int64_t> next_offset_{0};
  absl::Mutex answer_mu_;
  std::vector<grpc::ServerUnaryReactor*> to_answer_ ABSL_GUARDED_BY(answer_mu_);
  bool stopping_ ABSL_GUARDED_BY(answer_mu_) = false;
  // Last: started once everything it uses exists.
  std::thread answerer_;
};

}  // namespace eventbus::bench
