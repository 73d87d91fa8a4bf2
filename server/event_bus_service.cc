#include "server/event_bus_service.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "server/event_codec.h"
#include "server/grpc_status.h"

namespace eventbus::server {
namespace {

// Results per PublishBatchResponse written on a stream, at most, and the
// bytes past which a write takes no more, so that a write stays well under a
// client's default 4 MiB receive limit.
constexpr int kMaxResultsPerWrite = 2000;
constexpr size_t kMaxBytesPerWrite = 1 << 20;

// A result's encoded size, near enough for kMaxBytesPerWrite (a quarter of
// a client's default limit) and without ByteSizeLong's walk of every field,
// which was 3% of the sidecar's CPU at 100 events per message: its strings
// plus at most 48 bytes of tags, lengths and numbers.
size_t EstimatedBytes(const v1::PublishResponse& r) {
  return r.correlation_id().size() + r.event_id().size() + r.topic().size() +
         r.status().message().size() + 48;
}

absl::Status ShuttingDown() {
  return absl::UnavailableError(
      "eventbus is shutting down; this event was not published, send it to "
      "another instance");
}

}  // namespace

void SetResult(const absl::Status& status, int32_t partition, int64_t offset,
               v1::PublishResponse* response) {
  ToProtoStatus(status, response->mutable_status());
  response->set_partition(status.ok() ? partition : -1);
  response->set_offset(status.ok() ? offset : -1);
}

// One PublishStream call, modeled on grpc's WatchReactor: a mutex guards the
// state, one read and one write are in flight at most, and the reactor lives
// until gRPC is done with it (OnDone) AND every delivery it is waiting for
// has come back (refs_).
class EventBusService::StreamReactor final
    : public grpc::ServerBidiReactor<v1::PublishBatchRequest,
                                     v1::PublishBatchResponse> {
 public:
  StreamReactor(EventBusService* service, grpc::CallbackServerContext* context)
      : service_(service),
        context_(context),
        trace_(CallTraceContext(*context)) {}

  void Start() {
    service_->Register(this);
    absl::MutexLock lock(&mu_);
    read_pending_ = true;
    StartNextRead();
  }

  void Drain() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    MaybeFinishLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      read_pending_ = false;
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    bool draining;
    {
      absl::MutexLock lock(&mu_);
      draining = draining_;
      in_flight_ += request_->requests_size();
    }
    refs_.fetch_add(request_->requests_size(), std::memory_order_relaxed);
    // One clock read for the message: its events' default time, and the
    // deadline check.
    const absl::Time now = absl::Now();
    const absl::Time deadline = service_->ProduceDeadline(*context_, now);
    std::vector<std::unique_ptr<v1::PublishResponse>> refused;
    for (v1::PublishRequest& req : *request_->mutable_requests()) {
      absl::StatusOr<kafka::Record> record =
          draining ? absl::StatusOr<kafka::Record>(ShuttingDown())
                   : service_->Encode(req, trace_, now);
      absl::Status status = record.status();
      // The result, its strings moved out of the request (done with once
      // encoded). Owned by the delivery callback once the producer took the
      // record (the callback then fits in AnyInvocable's inline storage);
      // answered at once otherwise.
      auto* result = new v1::PublishResponse;
      result->set_correlation_id(std::move(*req.mutable_correlation_id()));
      result->set_event_id(std::move(*req.mutable_event()->mutable_id()));
      result->set_topic(std::move(*req.mutable_topic()));
      if (status.ok()) {
        status = service_->Produce(
            *std::move(record), deadline, now,
            [this, result](kafka::DeliveryResult delivery) {
              std::unique_ptr<v1::PublishResponse> r(result);
              SetResult(delivery.status, delivery.partition, delivery.offset,
                        r.get());
              OnDelivered(std::move(r));
            });
      }
      if (!status.ok()) {
        service_->CountRefused(result->topic(), status);
        std::unique_ptr<v1::PublishResponse> r(result);
        SetResult(status, -1, -1, r.get());
        refused.push_back(std::move(r));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      in_flight_ -= static_cast<int64_t>(refused.size());
      for (auto& r : refused) pending_.push_back(std::move(r));
      read_pending_ = false;
      MaybeReadLocked();
      MaybeWriteLocked();
      MaybeFinishLocked();
    }
    Unref(static_cast<int64_t>(refused.size()));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_pending_ = false;
    writing_.Clear();
    if (!ok) broken_ = true;
    MaybeWriteLocked();
    MaybeReadLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    broken_ = true;
    MaybeFinishLocked();
  }

  void OnDone() override {
    service_->Unregister(this);
    Unref(1);
  }

 private:
  // Called on the producer's delivery thread.
  void OnDelivered(std::unique_ptr<v1::PublishResponse> result)
      ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      pending_.push_back(std::move(result));
      MaybeReadLocked();
      MaybeWriteLocked();
      MaybeFinishLocked();
    }
    Unref(1);
  }

  // Reads while the events without a written result (in Kafka's hands, or
  // answered and waiting for a client that does not read) are under the
  // window.
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t unanswered = in_flight_ +
                               static_cast<int64_t>(pending_.size()) +
                               writing_.responses_size();
    if (read_pending_ || reads_done_ || draining_ || broken_ ||
        finish_called_ || unanswered >= service_->options_.stream_max_in_flight) {
      return;
    }
    read_pending_ = true;
    StartNextRead();
  }

  // The previous message is done with: its objects go at once, and the next
  // one is parsed into the emptied arena.
  void StartNextRead() {
    arena_.Reset();
    request_ =
        google::protobuf::Arena::CreateMessage<v1::PublishBatchRequest>(&arena_);
    StartRead(request_);
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_pending_ || finish_called_ || broken_ || pending_.empty()) return;
    size_t bytes = 0;
    while (!pending_.empty() && bytes < kMaxBytesPerWrite &&
           writing_.responses_size() < kMaxResultsPerWrite) {
      bytes += EstimatedBytes(*pending_.front());
      writing_.mutable_responses()->AddAllocated(pending_.front().release());
      pending_.pop_front();
    }
    write_pending_ = true;
    StartWrite(&writing_);
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_called_) return;
    if (broken_) {
      finish_called_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "the stream was cancelled"));
      return;
    }
    if (write_pending_ || !pending_.empty() || in_flight_ > 0) return;
    if (reads_done_) {
      finish_called_ = true;
      Finish(grpc::Status::OK);
    } else if (draining_) {
      finish_called_ = true;
      // Tells a client that the UNAVAILABLE is this answer, not a broken
      // connection: events without a result were not published.
      context_->AddTrailingMetadata(std::string(kStreamEndTrailer),
                                    std::string(kStreamEndDrained));
      Finish(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          "eventbus is shutting down: every request it read has a result; "
          "requests without one were not published, send them to another "
          "instance"));
    }
  }

  void Unref(int64_t n) {
    if (n > 0 && refs_.fetch_sub(n, std::memory_order_acq_rel) == n) {
      delete this;
    }
  }

  EventBusService* const service_;
  grpc::CallbackServerContext* const context_;
  // The call's trace context, given to every event of the stream that has
  // none of its own.
  const TraceContext trace_;
  // Target of StartRead, on arena_; touched only between StartRead and the
  // end of OnReadDone. A message's hundreds of small objects are allocated
  // from the arena and freed with it, not one by one.
  google::protobuf::Arena arena_;
  v1::PublishBatchRequest* request_ = nullptr;
  // One for gRPC (released in OnDone) plus one per event handed to Kafka.
  std::atomic<int64_t> refs_{1};

  absl::Mutex mu_;
  std::deque<std::unique_ptr<v1::PublishResponse>> pending_ ABSL_GUARDED_BY(mu_);
  // Passed to StartWrite; lives until OnWriteDone.
  v1::PublishBatchResponse writing_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

EventBusService::EventBusService(kafka::Producer* producer,
                                 PublishOptions options,
                                 Subscriptions* subscriptions,
                                 PublishMetrics* metrics)
    : producer_(producer),
      options_(std::move(options)),
      subscriptions_(subscriptions),
      metrics_(metrics) {}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>*
EventBusService::Subscribe(grpc::CallbackServerContext* context) {
  // gRPC answers a null reactor with UNIMPLEMENTED.
  if (subscriptions_ == nullptr) return nullptr;
  return subscriptions_->Open(context);
}

EventBusService::~EventBusService() = default;

absl::Time EventBusService::ProduceDeadline(
    const grpc::CallbackServerContext& context, absl::Time now) const {
  const auto call_deadline = context.deadline();
  if (call_deadline >= std::chrono::system_clock::time_point::max() -
                           std::chrono::hours(24 * 365)) {
    return now + options_.publish_timeout;
  }
  const absl::Time deadline = absl::FromChrono(call_deadline);
  // Answer a little before the call's own deadline so the caller gets our
  // status (UNAVAILABLE, RESOURCE_EXHAUSTED) rather than a bare
  // DEADLINE_EXCEEDED.
  const absl::Duration margin =
      std::min(absl::Milliseconds(200), (deadline - now) / 10);
  // No event waits longer than publish_timeout, however long the call's
  // deadline: librdkafka gives up after it too (message.timeout.ms).
  return std::min(deadline - std::max(margin, absl::ZeroDuration()),
                  now + options_.publish_timeout);
}

TraceContext EventBusService::CallTraceContext(
    const grpc::CallbackServerContext& context) {
  TraceContext trace;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("traceparent"); it != metadata.end()) {
    trace.traceparent.assign(it->second.data(), it->second.size());
  }
  if (auto it = metadata.find("tracestate"); it != metadata.end()) {
    trace.tracestate.assign(it->second.data(), it->second.size());
  }
  return trace;
}

absl::StatusOr<kafka::Record> EventBusService::Encode(
    v1::PublishRequest& request, const TraceContext& trace,
    absl::Time now) const {
  ApplyTraceContext(trace, request.mutable_event());
  absl::Status status = PrepareRequest(request, options_.default_source, now);
  if (!status.ok()) return status;
  const ContentMode mode = options_.structured_topics.count(request.topic())
                               ? ContentMode::kStructured
                               : ContentMode::kBinary;
  return EncodeRecord(request, mode, options_.max_event_bytes);
}

absl::Status EventBusService::Produce(kafka::Record record, absl::Time deadline,
                                     absl::Time now,
                                     kafka::DeliveryCallback done) {
  if (deadline <= now) {
    return absl::DeadlineExceededError(
        "the call's deadline passed before the event could be handed to "
        "Kafka; it was not written");
  }
  return producer_->Produce(std::move(record), deadline, std::move(done));
}

grpc::ServerUnaryReactor* EventBusService::Publish(
    grpc::CallbackServerContext* context, const v1::PublishRequest* request,
    v1::PublishResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!CallStarted()) {
    CountRefused(request->topic(), ShuttingDown());
    reactor->Finish(ToGrpcStatus(ShuttingDown()));
    return reactor;
  }
  // The request is const; the event's defaults are filled into a copy.
  v1::PublishRequest req = *request;
  response->set_correlation_id(req.correlation_id());
  response->set_topic(req.topic());
  const absl::Time now = absl::Now();
  absl::StatusOr<kafka::Record> record =
      Encode(req, CallTraceContext(*context), now);
  response->set_event_id(req.event().id());
  absl::Status status = record.status();
  if (status.ok()) {
    status = Produce(*std::move(record), ProduceDeadline(*context, now), now,
                     [this, reactor, response](kafka::DeliveryResult d) {
                       SetResult(d.status, d.partition, d.offset, response);
                       reactor->Finish(ToGrpcStatus(d.status));
                       CallFinished();
                     });
  }
  if (!status.ok()) {
    CountRefused(req.topic(), status);
    reactor->Finish(ToGrpcStatus(status));
    CallFinished();
  }
  return reactor;
}

grpc::ServerUnaryReactor* EventBusService::PublishBatch(
    grpc::CallbackServerContext* context,
    const v1::PublishBatchRequest* request,
    v1::PublishBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!CallStarted()) {
    for (const v1::PublishRequest& r : request->requests()) {
      CountRefused(r.topic(), ShuttingDown());
    }
    reactor->Finish(ToGrpcStatus(ShuttingDown()));
    return reactor;
  }
  struct BatchState {
    std::atomic<int> remaining;
    grpc::ServerUnaryReactor* reactor;
    EventBusService* service;
    void Done() {
      if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        reactor->Finish(grpc::Status::OK);
        service->CallFinished();
        delete this;
      }
    }
  };
  const int n = request->requests_size();
  auto* state = new BatchState{{n + 1}, reactor, this};
  response->mutable_responses()->Reserve(n);
  for (int i = 0; i < n; ++i) response->add_responses();
  const absl::Time now = absl::Now();
  const absl::Time deadline = ProduceDeadline(*context, now);
  const TraceContext trace = CallTraceContext(*context);
  for (int i = 0; i < n; ++i) {
    v1::PublishRequest req = request->requests(i);
    v1::PublishResponse* r = response->mutable_responses(i);
    r->set_correlation_id(req.correlation_id());
    r->set_topic(req.topic());
    absl::StatusOr<kafka::Record> record = Encode(req, trace, now);
    // Written before the event is produced, so a fast delivery cannot race.
    r->set_event_id(req.event().id());
    absl::Status status = record.status();
    if (status.ok()) {
      status = Produce(*std::move(record), deadline, now,
                       [state, r](kafka::DeliveryResult d) {
                         SetResult(d.status, d.partition, d.offset, r);
                         state->Done();
                       });
    }
    if (!status.ok()) {
      CountRefused(req.topic(), status);
      SetResult(status, -1, -1, r);
      state->Done();
    }
  }
  state->Done();
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
EventBusService::PublishStream(grpc::CallbackServerContext* context) {
  auto* stream = new StreamReactor(this, context);
  stream->Start();
  return stream;
}

bool EventBusService::CallStarted() {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  ++unary_calls_;
  return true;
}

void EventBusService::CallFinished() {
  absl::MutexLock lock(&mu_);
  --unary_calls_;
}

bool EventBusService::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return unary_calls_ == 0 && streams_.empty();
  };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

void EventBusService::Register(StreamReactor* stream) {
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    streams_.insert(stream);
    draining = draining_;
  }
  if (draining) stream->Drain();
}

void EventBusService::Unregister(StreamReactor* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void EventBusService::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (StreamReactor* stream : streams_) stream->Drain();
}

}  // namespace eventbus::server
