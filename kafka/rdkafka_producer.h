#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kafka/producer.h"
#include "kafka/rdkafka_handles.h"
#include "kafka/rdkafka_stats.h"

namespace eventbus::kafka {

struct ProducerOptions {
  // librdkafka configuration properties (CONFIGURATION.md), applied in
  // order. Must include bootstrap.servers.
  std::map<std::string, std::string> properties;
  // Bound on the bytes of records waiting for a broker or for room in
  // librdkafka's queue; past it Produce refuses with RESOURCE_EXHAUSTED.
  size_t max_waiting_bytes = 64u << 20;
  // How often the producer checks that a broker answers.
  absl::Duration connect_check_interval = absl::Seconds(1);
  // Called with librdkafka's statistics every statistics.interval.ms (a
  // property; 0 or unset: never), on the poll thread. May be empty.
  std::function<void(const RdKafkaStats&)> on_statistics;
};

// The librdkafka producer behind the Producer interface.
//
// Threads: Produce may be called from any thread. A poll thread serves
// delivery reports (it runs every DeliveryCallback), hands waiting records to
// librdkafka in order and re-creates the handle after a fatal error; a
// monitor thread asks a broker for metadata to know whether Kafka answers.
//
// A fatal error (the idempotent producer's guarantees broke, e.g. a broker
// lost acknowledged records) is logged and the handle is replaced: records in flight on the old handle
// fail (UNAVAILABLE, or UNKNOWN when possibly persisted); later records go to
// the new handle.
class RdKafkaProducer final : public Producer {
 public:
  // Creates the producer and starts its threads. Fails with
  // INVALID_ARGUMENT naming the property when librdkafka rejects one.
  static absl::StatusOr<std::unique_ptr<RdKafkaProducer>> Create(
      ProducerOptions options);

  RdKafkaProducer(const RdKafkaProducer&) = delete;
  RdKafkaProducer& operator=(const RdKafkaProducer&) = delete;
  // Shutdown(absl::ZeroDuration()) unless Shutdown was called.
  ~RdKafkaProducer() override;

  absl::Status Produce(Record record, absl::Time deadline,
                       DeliveryCallback done) override;
  // Whether a broker answered lately: a metadata probe (every
  // connect_check_interval) or an acknowledged delivery within the last 10 s,
  // and librdkafka reported no all-brokers-down since. One broker down or
  // hung does not make it false while another answers.
  bool Connected() const override {
    return connected_.load(std::memory_order_acquire);
  }

  // Stops accepting records and waits up to `timeout` until every accepted
  // record is delivered; then purges what is left (those callbacks get
  // UNAVAILABLE, or UNKNOWN when possibly persisted) and destroys the handle.
  // Every callback has run when it returns. Returns OK when everything was
  // delivered, DEADLINE_EXCEEDED otherwise. Later calls return at once.
  absl::Status Shutdown(absl::Duration timeout);
  // Starts the same without waiting: takes no new records, and those still
  // waiting or in flight at `deadline` fail then (the callbacks run on the
  // producer's thread). Shutdown then waits, and cannot extend the deadline.
  void BeginShutdown(absl::Time deadline);

  // Raises a fatal error on the current handle as librdkafka would.
  absl::Status TriggerFatalErrorForTesting(absl::string_view reason);
  // How many times the handle was re-created after a fatal error.
  int recreations() const { return recreations_.load(); }

  // What waits, for the metrics: records waiting for room in librdkafka's
  // queue or for a broker (and their bytes), and librdkafka's own queue
  // (records not yet acknowledged, rd_kafka_outq_len).
  struct Queues {
    size_t waiting = 0;
    size_t waiting_bytes = 0;
    int librdkafka = 0;
  };
  Queues QueueDepths() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiting {
    Record record;
    absl::Time deadline;
    DeliveryCallback done;
  };
  using Handle = std::shared_ptr<rd_kafka_t>;

  explicit RdKafkaProducer(ProducerOptions options);
  absl::StatusOr<Handle> NewHandle();

  static void DeliveryReport(rd_kafka_t* rk, const rd_kafka_message_t* msg,
                             void* opaque) noexcept;
  static int StatsCallback(rd_kafka_t* rk, char* json, size_t json_len,
                           void* opaque) noexcept;
  static void ErrorCallback(rd_kafka_t* rk, int err, const char* reason,
                            void* opaque) noexcept;

  Handle CurrentHandle() const ABSL_LOCKS_EXCLUDED(mu_);
  // Hands `record` to librdkafka; on success the record's value and `done`
  // move into the message's context. Returns librdkafka's error.
  int ProduceNow(rd_kafka_t* rk, Record& record, DeliveryCallback& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PollLoop();
  void MonitorLoop();
  void ServeWaiting(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  void Recreate();
  // Serves the delivery reports of replaced handles; drops those with none
  // left. Poll thread only.
  void ServeRetired(absl::Time now);
  // Purges everything from `rk` and serves the resulting delivery reports,
  // for up to kPurgeDrainLimit (at shutdown).
  static void PurgeAndDrain(rd_kafka_t* rk);
  void FailAllWaiting(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

  const ProducerOptions options_;
  std::string brokers_;

  mutable absl::Mutex mu_;
  Handle rk_ ABSL_GUARDED_BY(mu_);
  std::deque<Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  size_t waiting_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(mu_);
  bool monitor_stop_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<bool> connected_{false};
  // When a broker last answered (absl::GetCurrentTimeNanos), and when the
  // current handle last reported every broker down.
  std::atomic<int64_t> last_answer_ns_{0};
  std::atomic<int64_t> all_down_ns_{0};
  std::atomic<bool> fatal_{false};
  // The authorization error (e.g. CLUSTER_AUTHORIZATION_FAILED) of the last
  // fatal error when Kafka refused the producer itself; 0 otherwise, and
  // after an event is delivered. Events fail with PERMISSION_DENIED then,
  // and the handle is re-created with back-off instead of at once.
  std::atomic<int> refused_{0};
  // Poll thread only: refusals in a row, and when the next re-creation may
  // happen (absl::GetCurrentTimeNanos).
  int refusals_ = 0;
  int64_t recreate_after_ns_ = 0;
  std::atomic<rd_kafka_t*> current_rk_{nullptr};
  std::atomic<int> recreations_{0};
  std::atomic<size_t> undelivered_at_shutdown_{0};

  // Handles replaced after a fatal error, purged, until every delivery
  // report of theirs was served (so that no callback is lost). Poll thread
  // only.
  struct Retired {
    Handle rk;
    absl::Time since;
    bool warned = false;
  };
  std::vector<Retired> retired_;

  std::thread poll_thread_;
  std::thread monitor_thread_;
};

// Whether librdkafka knows a (global or topic) property called `name`.
bool IsRdKafkaProperty(absl::string_view name);

// Whether the librdkafka property `name` holds a secret (a password, a
// private key, a client secret): its value is never logged or shown.
bool IsSecretProperty(absl::string_view name);

// Builds a librdkafka configuration from `properties`. Fails with
// INVALID_ARGUMENT naming the property librdkafka rejects (and its value,
// unless it is a secret).
absl::StatusOr<RdKafkaConfPtr> MakeRdKafkaConf(const std::map<std::string, std::string>& properties);

}  // namespace eventbus::kafka
