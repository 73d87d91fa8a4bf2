#pragma once

// The sidecar's Prometheus metrics (docs/operations.md lists them): publish
// outcomes and latency, gRPC calls, the process, and how it records them.

#include <array>
#include <map>
#include <set>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "grpcpp/support/server_interceptor.h"
#include "kafka/consumer.h"
#include "kafka/producer.h"

namespace eventbus::server {

// Distinct topic label values at most; further topics are counted as
// topic="_other", so that clients naming random topics cannot grow the
// metrics without bound. Topic names Kafka would refuse count as "_invalid".
inline constexpr size_t kMaxTopicLabels = 1000;

// Publish outcomes per event: eventbus_publish_events_total{topic,code},
// eventbus_publish_bytes_total{topic} (events Kafka acknowledged),
// eventbus_publish_latency_seconds{topic} (handed to Kafka to its
// acknowledgement) and eventbus_publish_in_flight_events.
class PublishMetrics {
 public:
  explicit PublishMetrics(common::Registry& registry);

  // The series of one topic. Stable for the lifetime of PublishMetrics.
  class Topic {
   public:
    void Count(absl::StatusCode code);

   private:
    friend class PublishMetrics;
    Topic(PublishMetrics* owner, std::string label);
    PublishMetrics* const owner_;
    const std::string label_;
    common::Counter& bytes_;
    common::Histogram& latency_;
    // By status code, made at first use.
    std::array<std::atomic<common::Counter*>, 17> events_{};
  };

  Topic& ForTopic(absl::string_view topic) ABSL_LOCKS_EXCLUDED(mu_);

  // An event refused before it reached Kafka (bad request, full buffer,
  // shutting down), with its status.
  void Refused(absl::string_view topic, const absl::Status& status);
  // Kafka's answer for an event handed to it `latency` ago.
  void Delivered(Topic& topic, const absl::Status& status, size_t bytes,
                 absl::Duration latency);

  common::Gauge& in_flight() { return in_flight_; }

 private:
  common::Family<common::Counter>& events_;
  common::Family<common::Counter>& bytes_;
  common::Family<common::Histogram>& latency_;
  common::Gauge& in_flight_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Topic>> topics_
      ABSL_GUARDED_BY(mu_);
};

// A Producer that records each delivery's outcome, bytes and latency in
// PublishMetrics, around the real one.
class MeteredProducer final : public kafka::Producer {
 public:
  // Both must outlive this.
  MeteredProducer(kafka::Producer* inner, PublishMetrics* metrics)
      : inner_(inner), metrics_(metrics) {}

  absl::Status Produce(kafka::Record record, absl::Time deadline,
                       kafka::DeliveryCallback done) override;
  bool Connected() const override { return inner_->Connected(); }

 private:
  kafka::Producer* const inner_;
  PublishMetrics* const metrics_;
};

// Distinct consumer-group label values at most; further groups count as
// group="_other".
inline constexpr size_t kMaxGroupLabels = 1000;

// Subscribe, by consumer group and topic:
//   eventbus_subscribe_streams{group}                     open streams
//   eventbus_subscribe_deliveries_total{group,topic}      sent to clients
//   eventbus_subscribe_acks_total{group,topic}
//   eventbus_subscribe_nacks_total{group,topic}
//   eventbus_subscribe_redeliveries_total{group,topic,reason}  nack|deadline
//   eventbus_subscribe_dead_lettered_total{group,topic}   written to the DLQ
//   eventbus_subscribe_outstanding_deliveries{group}      sent, not settled
//   eventbus_subscribe_delivery_latency_seconds{group,topic}  record time to
//       first delivery (the consumer latency)
//   eventbus_subscribe_ack_latency_seconds{group,topic}   delivery to ack
//   eventbus_subscribe_lag_records{group,topic,partition} the backlog: high
//       watermark minus the group's committed offset, for the partitions
//       this sidecar's streams fetch (from librdkafka's statistics)
class SubscribeMetrics {
 public:
  explicit SubscribeMetrics(common::Registry& registry);

  // The observer of one Subscribe stream of `group`; the stream counts as
  // open until it is destroyed.
  std::unique_ptr<kafka::ConsumerObserver> StreamObserver(
      absl::string_view group) ABSL_LOCKS_EXCLUDED(mu_);

  // Sets the outstanding deliveries per group (called at scrape time).
  void SetOutstanding(const std::map<std::string, int64_t>& by_group);

  // The label a group is counted under.
  std::string GroupLabel(absl::string_view group) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Stream;
  common::Family<common::Gauge>& streams_;
  common::Family<common::Counter>& deliveries_;
  common::Family<common::Counter>& acks_;
  common::Family<common::Counter>& nacks_;
  common::Family<common::Counter>& redeliveries_;
  common::Family<common::Counter>& dead_lettered_;
  common::Family<common::Gauge>& outstanding_;
  common::Family<common::Histogram>& delivery_latency_;
  common::Family<common::Histogram>& ack_latency_;
  common::Family<common::Gauge>& lag_;

  absl::Mutex mu_;
  std::set<std::string, std::less<>> groups_ ABSL_GUARDED_BY(mu_);
  // Which stream last reported each partition's lag: a partition moves
  // between a group's streams in a rebalance, and only its current owner
  // may drop its series.
  std::map<std::vector<std::string>, const Stream*> lag_owners_
      ABSL_GUARDED_BY(mu_);
};

// The producer's view of the Kafka brokers, from librdkafka's statistics:
//   eventbus_kafka_broker_up{broker}                1 while connected
//   eventbus_kafka_broker_rtt_avg_seconds{broker}   request round trip
//   eventbus_kafka_broker_rtt_p99_seconds{broker}
//   eventbus_kafka_broker_outbuf_requests{broker}   waiting to be sent
//   eventbus_kafka_broker_waitresp_requests{broker} waiting for an answer
//   eventbus_kafka_broker_retries_total{broker}     requests sent again
//   eventbus_kafka_broker_timeouts_total{broker}
//   eventbus_kafka_broker_disconnects_total{broker}
class BrokerMetrics {
 public:
  explicit BrokerMetrics(common::Registry& registry);
  // Replaces what the last statistics said; brokers no longer listed go.
  void Update(const kafka::RdKafkaStats& stats);

 private:
  std::vector<common::Family<common::Gauge>*> families_;
  common::Family<common::Gauge>& up_;
  common::Family<common::Gauge>& rtt_avg_;
  common::Family<common::Gauge>& rtt_p99_;
  common::Family<common::Gauge>& outbuf_;
  common::Family<common::Gauge>& waitresp_;
  common::Family<common::Gauge>& retries_;
  common::Family<common::Gauge>& timeouts_;
  common::Family<common::Gauge>& disconnects_;
};

// Counts gRPC calls as they end, eventbus_grpc_handled_total{method,code},
// and open streaming calls, eventbus_grpc_open_streams{method}.
class GrpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit GrpcMetricsInterceptorFactory(common::Registry& registry);
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  class Interceptor;
  common::Family<common::Counter>& handled_;
  common::Family<common::Gauge>& open_streams_;
};

// The standard process_* metrics, read from /proc at each scrape:
// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_threads, process_start_time_seconds.
void AddProcessMetrics(common::Registry& registry);

}  // namespace eventbus::server
