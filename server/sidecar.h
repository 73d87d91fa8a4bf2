#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kafka/admin.h"
#include "kafka/rdkafka_producer.h"
#include "server/admin_service.h"
#include "server/config.h"
#include "common/metrics.h"
#include "server/event_bus_service.h"
#include "server/metrics_http.h"
#include "server/sidecar_metrics.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {

// The whole sidecar in one object: the Kafka producer, the gRPC server with
// the EventBus service, health and reflection. main() and the tests start it
// the same way.
class Sidecar {
 public:
  // Creates the producer, binds every `server.listen` address and starts
  // serving. Health reports NOT_SERVING until a Kafka broker answers. Fails
  // with INVALID_ARGUMENT for a bad librdkafka property and UNAVAILABLE for
  // an address it cannot listen on.
  static absl::StatusOr<std::unique_ptr<Sidecar>> Start(const Config& config);

  Sidecar(const Sidecar&) = delete;
  Sidecar& operator=(const Sidecar&) = delete;
  // Shutdown() unless it was called.
  ~Sidecar();

  // The addresses served, with the ports actually bound (so
  // "127.0.0.1:0" shows the chosen port).
  const std::vector<std::string>& addresses() const { return addresses_; }

  // Graceful stop: health goes NOT_SERVING, open PublishStreams stop
  // reading and drain, new calls are refused, calls in flight get
  // `server.shutdown_grace` to finish, then the producer is flushed. Returns
  // OK when every accepted event was delivered. Idempotent.
  absl::Status Shutdown();

  kafka::RdKafkaProducer& producer() { return *producer_; }

  // The metrics listener's address with its bound port, or "" when
  // `server.metrics_listen` is empty.
  std::string metrics_address() const;
  // The Prometheus registry (tests read it directly too).
  common::Registry& metrics() { return metrics_; }

 private:
  explicit Sidecar(const Config& config) : config_(config) {}
  void HealthLoop();

  void AddSidecarMetrics();

  const Config config_;
  common::Registry metrics_;
  std::unique_ptr<BrokerMetrics> broker_metrics_;
  std::unique_ptr<kafka::RdKafkaProducer> producer_;
  std::unique_ptr<PublishMetrics> publish_metrics_;
  std::unique_ptr<SubscribeMetrics> subscribe_metrics_;
  std::unique_ptr<MeteredProducer> metered_producer_;
  std::unique_ptr<Subscriptions> subscriptions_;
  std::unique_ptr<EventBusService> service_;
  std::unique_ptr<kafka::Admin> admin_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> addresses_;
  std::thread health_thread_;
  std::atomic<bool> serving_{false};
  // Last: stopped first, while everything it reads still exists.
  std::unique_ptr<MetricsHttpServer> metrics_http_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(mu_);
};

// The librdkafka producer properties for `config`: eventbus's defaults
// (idempotence, acks=all, bounded queue, ...) overridden by
// kafka.producer.* from the configuration.
std::map<std::string, std::string> ProducerProperties(const Config& config);

// The settings of Subscribe streams for `config`.
SubscribeOptions SubscribeOptionsFor(const Config& config);

}  // namespace eventbus::server
