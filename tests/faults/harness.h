#pragma once

// What every fault test does around its fault: publishing load through the
// sidecar (PublishStream and unary Publish, with the C++ client), a Subscribe
// consumer group reading through the sidecar, a watch on gRPC health, and
// the check afterwards, against Kafka read directly: every acked event is
// stored where its ack said, in order per key, and reached the group.

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cpp/publisher.h"
#include "client/cpp/subscriber.h"

namespace eventbus::testing {

// Every event the load publishes, and what the client was told of it.
class PublishLedger {
 public:
  struct Event {
    std::string id;
    std::string key;
    std::string sender;  // the publisher (a stream, or one unary caller)
    int64_t seq = 0;     // its order within the sender
    absl::Time sent;
    // Set once the result came: OK with partition and offset, or the error.
    std::optional<absl::Status> result;
    int32_t partition = -1;
    int64_t offset = -1;
    absl::Time done;
  };

  // Registers an event about to be sent; returns its index.
  size_t Add(std::string id, std::string key, std::string sender, int64_t seq)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Complete(size_t index, const absl::StatusOr<client::PublishResult>& result)
      ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<Event> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t acked() const ABSL_LOCKS_EXCLUDED(mu_);
  // When the last event was acked (InfinitePast before any).
  absl::Time last_ack() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until `n` more events are acked than at `since_count`.
  bool WaitAcked(int64_t n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_ack_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Publishing load on `topic` until Stop: `streams` PublishStream publishers
// (the C++ client's PublishAsync, at most `window` events outstanding each)
// and `unary` callers of unary Publish (one call at a time each). Keys are
// per sender ("<sender>-k<n>", `keys` of them), so that every sender's
// events of one key must be stored in the order sent. A sender whose stream
// breaks or whose call fails goes on with new events (an event is never
// retried: a retry is a new event).
struct LoadOptions {
  std::string topic;
  int streams = 2;
  int unary = 4;
  int keys = 8;
  int window = 200;
  // Per sender; 0: as fast as results come.
  double events_per_second = 250;
  absl::Duration call_deadline = absl::Seconds(10);
  size_t value_bytes = 100;
};
class PublishLoad {
 public:
  PublishLoad(std::string address, LoadOptions options, PublishLedger* ledger);
  ~PublishLoad();
  // Stops sending and waits for every sent event's result.
  void Stop();

 private:
  void StreamLoop(int index);
  void UnaryLoop(int index);
  void Pace(absl::Time start, int64_t sent) const;

  const std::string address_;
  const LoadOptions options_;
  PublishLedger* const ledger_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// A consumer group reading `topic` through the sidecar at `address` with
// `members` Subscribe streams (the C++ client's Subscriber, auto-ack). A
// stream that ends is opened again after 200 ms (a client reconnecting).
struct ReaderOptions {
  int members = 2;
  // 0: the server's default.
  absl::Duration ack_deadline = absl::ZeroDuration();
  // Every `slow_every`-th delivery's handler takes `slow_for` (0: none), with
  // no lease extension, so that its ack deadline can pass.
  int slow_every = 0;
  absl::Duration slow_for = absl::ZeroDuration();
};
class GroupReader {
 public:
  GroupReader(std::string address, std::string topic, std::string group,
              int members)
      : GroupReader(std::move(address), std::move(topic), std::move(group),
                    ReaderOptions{.members = members}) {}
  GroupReader(std::string address, std::string topic, std::string group,
              ReaderOptions options);
  ~GroupReader();
  void Stop();
  // Waits until every id in `ids` was received.
  bool WaitFor(const std::vector<std::string>& ids, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Event id -> deliveries.
  std::map<std::string, int> received() const ABSL_LOCKS_EXCLUDED(mu_);
  // How each stream ended, by status code (those that ended before Stop),
  // and the last message of each code.
  std::map<std::string, int> stream_ends() const ABSL_LOCKS_EXCLUDED(mu_);
  std::map<std::string, std::string> end_messages() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void MemberLoop(int index);

  const std::string address_, topic_, group_;
  const ReaderOptions options_;
  std::atomic<int64_t> handled_{0};
  mutable absl::Mutex mu_;
  std::map<std::string, int> received_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> ends_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> end_messages_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<client::Subscriber*> members_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// A process's resources, from /proc.
struct ProcessFigures {
  int64_t rss_bytes = 0;
  int64_t threads = 0;
  int64_t open_fds = 0;
  static ProcessFigures Of(pid_t pid);
  std::string ToString() const;
};

// Polls grpc.health.v1 of the sidecar at `address` every 100 ms.
class HealthWatch {
 public:
  explicit HealthWatch(const std::string& address);
  ~HealthWatch();
  void Stop();
  // Answers that were not SERVING (including failed checks), and the
  // longest run of them.
  int64_t not_serving() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t checks() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Duration longest_not_serving() const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the last answer was SERVING.
  bool serving() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for an answer of `serving`.
  bool WaitFor(bool serving, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);
  // Clears the counts (e.g. once the set-up is done).
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();
  std::shared_ptr<grpc::Channel> channel_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  int64_t checks_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t not_serving_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time down_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration longest_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The figures of one fault test, checked against Kafka read directly.
struct FaultReport {
  int64_t sent = 0;
  int64_t acked = 0;
  int64_t acked_without_offset = 0;  // stored, offset unknown (allowed)
  int64_t lost = 0;              // acked, but not in Kafka where the ack said
  int64_t misplaced = 0;         // at that partition/offset is another event
  int64_t out_of_order = 0;      // acked events of a sender and key stored out of order
  int64_t duplicates = 0;        // records in Kafka beyond the first of an id
  int64_t stored_unacked = 0;    // failed or unanswered, but in Kafka (allowed)
  int64_t not_received = 0;      // acked, but never reached the group
  int64_t redelivered = 0;       // deliveries beyond the first (allowed)
  std::map<std::string, int64_t> errors;  // publish errors by code
  int64_t unexpected_errors = 0;           // codes outside the documented set
  absl::Duration longest_stall;            // longest time without an ack
  std::string Line(const std::string& scenario) const;
};

// Reads `topic` from Kafka (directly, not through the sidecar) and checks
// the ledger against it; waits up to `receive_timeout` for the group to have
// received every acked event. Adds gtest failures for lost, misplaced,
// out-of-order, not-received events and undocumented error codes.
FaultReport CheckAgainstKafka(const std::string& topic, const PublishLedger& ledger,
                              const GroupReader* reader,
                              absl::Duration receive_timeout);

}  // namespace eventbus::testing
