#pragma once

#include <grpcpp/channel.h>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.grpc.pb.h"

namespace eventbus::client {

struct PublisherOptions {
  // Events handed to PublishAsync that have no result yet, at most;
  // PublishAsync blocks while this many are outstanding.
  int64_t max_buffered = 10000;
  // Events per PublishBatchRequest message on the stream, at most.
  int batch_size = 100;
  // Deadline of the blocking calls: Publish, and Close's wait for results.
  absl::Duration deadline = absl::Seconds(30);
};

// Where Kafka stored a published event.
struct PublishResult {
  int32_t partition = -1;
  int64_t offset = -1;
  // The event's id as written (the sidecar fills one in when it was empty).
  std::string event_id;
  std::string topic;
};

// Publishes events through the sidecar.
//
// Publish is one blocking unary call. PublishAsync pipelines events over one
// PublishStream (gRPC callback API): requests handed in while a write is in
// flight are batched into the next PublishBatchRequest, and results are
// matched to requests by a correlation id the Publisher assigns (it
// overwrites PublishRequest.correlation_id). Every event handed in gets
// exactly one result. If the stream breaks, every event still without a
// result completes with the stream's status (e.g. UNAVAILABLE) and the next
// PublishAsync opens a new stream.
//
// Thread-safe. `done` callbacks run on gRPC's threads, outside any lock
// held by the Publisher; they must not block for long and must not call
// PublishAsync (which may block while the buffer is full), Flush or Close.
class Publisher {
 public:
  using DoneFn = std::function<void(absl::StatusOr<PublishResult>)>;

  Publisher(std::shared_ptr<grpc::Channel> channel,
            PublisherOptions options = {});
  // `address`: "host:port" or "unix:/path".
  explicit Publisher(const std::string& address, PublisherOptions options = {});
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  // Close() unless it was called.
  ~Publisher();

  // Publishes one event and waits for Kafka's acknowledgement (unary
  // Publish, with `options.deadline`). Errors are the call's status.
  absl::StatusOr<PublishResult> Publish(const v1::PublishRequest& request);

  // Hands `request` to the stream; `done` is called once with its result.
  // Blocks while `max_buffered` events are outstanding. After Close, `done`
  // is called at once with FAILED_PRECONDITION.
  void PublishAsync(v1::PublishRequest request, DoneFn done)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::future<absl::StatusOr<PublishResult>> PublishAsync(
      v1::PublishRequest request) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until every event handed to PublishAsync so far has its result
  // (and its `done` has returned). DEADLINE_EXCEEDED after `timeout`.
  absl::Status Flush(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses further events, flushes (up to `options.deadline`; then the
  // stream is cancelled and the remaining events complete with CANCELLED),
  // half-closes the stream and waits for the server to end it (up to
  // `options.deadline` again; then it is cancelled). Returns the first
  // problem: the flush timing out, the end not coming, or the stream's final
  // status.
  // Idempotent.
  absl::Status Close() ABSL_LOCKS_EXCLUDED(mu_);

  // Events handed in whose `done` has not returned yet (a future made by
  // PublishAsync may already be ready while its event still counts here).
  int64_t outstanding() const ABSL_LOCKS_EXCLUDED(mu_);
  // PublishStream calls opened so far.
  int64_t streams_opened() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Stream;

  // The open stream that is not broken, opening one when there is none.
  Stream* CurrentStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PublisherOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventBus::Stub> stub_;

  mutable absl::Mutex mu_;
  // Not broken, accepting writes; null when the next event opens a stream.
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Streams not yet deleted (for cancelling them in Close).
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  // Streams whose OnDone has not finished yet.
  int64_t open_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Final status of the stream Close half-closed.
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  bool close_done_ ABSL_GUARDED_BY(mu_) = false;
  // What Close returned.
  absl::Status close_result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventbus::client
