#pragma once

#include <grpcpp/channel.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cpp/lease_book.h"
#include "common/clock.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "google/protobuf/arena.h"

namespace eventbus::client {

struct SubscriberOptions {
  // Topics to receive from; at least one.
  std::vector<std::string> topics;
  // Kafka consumer group.
  std::string group;
  // Where a group with no committed offset starts.
  v1::StartPosition start = v1::START_POSITION_LATEST;
  // With START_POSITION_TIME.
  absl::Time start_time = absl::UnixEpoch();
  // Flow control: deliveries not yet acked, at most. 0 = the server's default.
  int32_t max_outstanding_messages = 0;
  // A delivery not settled within this time is redelivered, unless its
  // lease is extended (below). 0 = the server's default, or 30s with lease
  // extension (the Subscriber must know the deadline to extend it in time).
  absl::Duration ack_deadline = absl::ZeroDuration();
  // Lease extension: while a delivery is queued for a handler, being
  // handled, or (auto_ack = false) waiting for the app to settle it, the
  // Subscriber extends its ack deadline (modify_ack_deadline, every third of
  // the deadline), for up to this long after it arrived; then it lets the
  // deadline pass and the event is redelivered. 0 = no lease extension.
  // Only with a sidecar that accepts modify_ack_deadline (it says so when
  // the stream opens); with an older one the Subscriber warns and does not
  // extend.
  absl::Duration max_lease_extension = absl::Minutes(60);
  // Attempts before the dead-letter topic. 0 = default.
  int32_t max_delivery_attempts = 0;
  // Empty = "<topic>.dlq".
  std::string dead_letter_topic;
  v1::Ordering ordering = v1::ORDERING_UNORDERED;
  // Worker threads running the handler.
  int concurrency = 1;
  // True: a handler returning OK acks its delivery, any other status nacks
  // it (redelivery after the server's backoff). False: the application
  // calls Ack, Nack or DeadLetter itself.
  bool auto_ack = true;
  // Leases run on it (tests: a common::SimulatedClock).
  const common::Clock* clock = common::Clock::Real();
};

// Receives events as one member of a Kafka consumer group over one
// Subscribe stream (gRPC callback API: the Subscriber's mutex guards the
// state, one read and one write in flight). Acks, nacks and dead-letters are
// batched into the next message written.
class Subscriber {
 public:
  // Runs on a worker thread; see SubscriberOptions::auto_ack.
  using Handler = std::function<absl::Status(const v1::Delivery&)>;

  Subscriber(std::shared_ptr<grpc::Channel> channel, SubscriberOptions options);
  // `address`: "host:port" or "unix:/path".
  Subscriber(const std::string& address, SubscriberOptions options);
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;
  // Must not be destroyed while Run is running.
  ~Subscriber();

  // Opens the stream and runs `handler` for each delivery on
  // `options.concurrency` worker threads until Stop() or the end of the
  // stream. Returns OK after Stop (in-flight handlers finished and their
  // acks were sent, then the stream was half-closed and the server ended it
  // OK), else the status the stream ended with. One Run at a time.
  absl::Status Run(Handler handler) ABSL_LOCKS_EXCLUDED(mu_);

  // Asks Run to end cleanly; returns at once. Safe from any thread,
  // including a handler, and before Run starts (Run then ends at once).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Settle a delivery (for auto_ack = false). Thread-safe; ids are batched
  // into the next message. Ignored once the stream has been half-closed or
  // has ended, and for a delivery of an earlier Run's stream (it is
  // redelivered). `delay` unset: the server's backoff.
  //
  // The delivery_id the handler sees is the Subscriber's own: the server's
  // id (which starts at 1 on every stream) with the number of the Run it
  // belongs to in its top bits (0 for the first Run, whose ids are the
  // server's), so that a late settlement cannot reach another delivery.
  void Ack(uint64_t delivery_id) ABSL_LOCKS_EXCLUDED(mu_);
  void Nack(uint64_t delivery_id,
            std::optional<absl::Duration> delay = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);
  void DeadLetter(uint64_t delivery_id, std::string reason)
      ABSL_LOCKS_EXCLUDED(mu_);

  // AckErrors the server sent (logged as warnings; the stream goes on).
  int64_t ack_errors() const ABSL_LOCKS_EXCLUDED(mu_);
  // Deliveries received so far.
  int64_t deliveries() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Stream;
  // One message read from the stream, on an arena of its own: one
  // allocation per block instead of one per field of every delivery.
  struct ReadBatch {
    ReadBatch();
    static google::protobuf::ArenaOptions ReadArenaOptions();
    google::protobuf::Arena arena;
    v1::SubscribeResponse* const response;
  };
  // A delivery waiting for a worker; it keeps its batch alive.
  struct Work {
    std::shared_ptr<ReadBatch> batch;
    const v1::Delivery* delivery = nullptr;
  };

  void WorkerLoop(const Handler& handler) ABSL_LOCKS_EXCLUDED(mu_);
  // The deadline deliveries get, and how often leases are extended (zero:
  // never).
  absl::Duration LeaseDeadline() const;
  absl::Duration LeasePeriod() const;
  // Waits for `condition`, extending leases every LeasePeriod meanwhile.
  void AwaitLeasingLocked(const absl::Condition& condition)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a modify_ack_deadline for the leased deliveries that need one,
  // and stops leasing those past max_lease_extension.
  void ExtendLeasesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the lease of a delivery being settled.
  void SettleLocked(uint64_t server_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The id the app sees for a server id of the current Run.
  uint64_t AppIdLocked(uint64_t server_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The server's id of a delivery of the current Run, or nullopt.
  std::optional<uint64_t> ServerIdLocked(uint64_t delivery_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::SubscribeRequest SubscriptionRequest() const;

  const SubscriberOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventBus::Stub> stub_;

  mutable absl::Mutex mu_;
  // The stream of the current Run; null outside Run.
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<Work> work_ ABSL_GUARDED_BY(mu_);
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Workers take no more work (Stop, or the stream ended).
  bool workers_stop_ ABSL_GUARDED_BY(mu_) = false;
  // Worker threads of the current Run that have not returned.
  int running_workers_ ABSL_GUARDED_BY(mu_) = 0;
  // Settlements waiting for the next write.
  std::vector<uint64_t> acks_ ABSL_GUARDED_BY(mu_);
  // Nacks by retry delay in nanoseconds (-1: the server's backoff).
  std::map<int64_t, std::vector<uint64_t>> nacks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<uint64_t>> dead_letters_
      ABSL_GUARDED_BY(mu_);
  // Leased deliveries of the current Run, by server id.
  LeaseBook leases_ ABSL_GUARDED_BY(mu_);
  // Leased ids for the next modify_ack_deadline messages (server ids).
  std::deque<uint64_t> extend_ ABSL_GUARDED_BY(mu_);
  // The current stream's server accepts modify_ack_deadline and the options
  // ask for leases.
  bool leases_on_ ABSL_GUARDED_BY(mu_) = false;
  // Runs ended so far, modulo 2^20: the top bits of the ids handed out.
  uint64_t run_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t ack_errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t deliveries_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace eventbus::client
