#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "kafka/producer.h"
#include "server/event_codec.h"
#include "server/sidecar_metrics.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {

// The trailing metadata a PublishStream ends with when the sidecar drained
// it (see PublishStream in the proto): every request read has its result.
inline constexpr absl::string_view kStreamEndTrailer = "eventbus-stream-end";
inline constexpr absl::string_view kStreamEndDrained = "drained";

struct PublishOptions {
  // Event.source for events that have none.
  std::string default_source;
  // Topics written in CloudEvents structured mode; the others in binary mode.
  std::set<std::string> structured_topics;
  // Largest record (key, value and headers) accepted.
  int64_t max_event_bytes = 1000000;
  // Events of one PublishStream handed to Kafka and not yet acknowledged, at
  // most; the stream stops reading while the window is full.
  int64_t stream_max_in_flight = 10000;
  // Deadline of a publish whose call has none.
  absl::Duration publish_timeout = absl::Seconds(30);
};

// eventbus.v1.EventBus on the gRPC callback API: Publish, PublishBatch and
// PublishStream over a kafka::Producer; Subscribe through Subscriptions
// (UNIMPLEMENTED when there are none).
//
// No reaction blocks: events are handed to the producer, and results come
// back on the producer's delivery thread, which finishes the call or queues
// the result for the stream's next write.
// The generated callback service, but with Subscribe served raw (see
// Subscriptions::Open).
using EventBusCallbackService = v1::EventBus::WithCallbackMethod_Publish<
    v1::EventBus::WithCallbackMethod_PublishStream<
        v1::EventBus::WithCallbackMethod_PublishBatch<
            v1::EventBus::WithRawCallbackMethod_Subscribe<
                v1::EventBus::Service>>>>;

class EventBusService final : public EventBusCallbackService {
 public:
  // `producer` must outlive every call this service starts, including the
  // deliveries still in flight when the gRPC server has shut down.
  // `subscriptions` may be null (Subscribe is then UNIMPLEMENTED); when set
  // it must outlive the gRPC server.
  // `metrics`, when set, counts the events refused before they reach the
  // producer (the producer counts the rest: give it a MeteredProducer).
  EventBusService(kafka::Producer* producer, PublishOptions options,
                  Subscriptions* subscriptions = nullptr,
                  PublishMetrics* metrics = nullptr);
  ~EventBusService() override;

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerUnaryReactor* PublishBatch(
      grpc::CallbackServerContext* context,
      const v1::PublishBatchRequest* request,
      v1::PublishBatchResponse* response) override;
  grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
  PublishStream(grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Subscribe(
      grpc::CallbackServerContext* context) override;

  // Starts draining for shutdown: every open PublishStream stops reading,
  // answers each request it already read, and ends with UNAVAILABLE.
  // Streams opened later end that way at once.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until no Publish, PublishBatch or PublishStream call is in
  // progress, or until `deadline`. Returns true when none is.
  bool WaitIdle(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class StreamReactor;

  // Checks `request`, fills in its event's defaults (and the call's trace
  // context; `now` is the time of an event without one) and encodes it.
  absl::StatusOr<kafka::Record> Encode(v1::PublishRequest& request,
                                       const TraceContext& trace,
                                       absl::Time now) const;
  // Hands `record` to the producer unless `deadline` is not after `now`. On
  // OK, `done` is called later with the outcome, on the producer's thread;
  // otherwise `done` is not called and the status says why the event was
  // refused.
  absl::Status Produce(kafka::Record record, absl::Time deadline,
                       absl::Time now, kafka::DeliveryCallback done);
  // The trace context in a call's metadata (traceparent, tracestate).
  static TraceContext CallTraceContext(
      const grpc::CallbackServerContext& context);
  // The deadline to give the producer for a call with `context`, at `now`.
  absl::Time ProduceDeadline(const grpc::CallbackServerContext& context,
                             absl::Time now) const;

  // Counts a unary call from its start to its Finish. CallStarted returns
  // false (and counts nothing) while draining.
  bool CallStarted() ABSL_LOCKS_EXCLUDED(mu_);
  void CallFinished() ABSL_LOCKS_EXCLUDED(mu_);
  void Register(StreamReactor* stream) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(StreamReactor* stream) ABSL_LOCKS_EXCLUDED(mu_);

  // Counts an event refused before it reached the producer.
  void CountRefused(absl::string_view topic, const absl::Status& status) {
    if (metrics_ != nullptr) metrics_->Refused(topic, status);
  }

  kafka::Producer* const producer_;
  const PublishOptions options_;
  Subscriptions* const subscriptions_;
  PublishMetrics* const metrics_;

  absl::Mutex mu_;
  std::set<StreamReactor*> streams_ ABSL_GUARDED_BY(mu_);
  int64_t unary_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

// Fills a PublishResponse's result fields from an outcome.
void SetResult(const absl::Status& status, int32_t partition, int64_t offset,
               v1::PublishResponse* response);

}  // namespace eventbus::server
