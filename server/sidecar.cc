#include "server/sidecar.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <pthread.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.pb.h"
#include "server/tls.h"

namespace eventbus::server {
namespace {

constexpr absl::string_view kServiceName = "eventbus.v1.EventBus";
// The health service name for liveness probes: SERVING while gRPC serves.
constexpr absl::string_view kLivenessService = "liveness";
constexpr int64_t kGrpcDefaultMaxReceive = 4 << 20;
constexpr int64_t kGrpcFramingAllowance = 64 << 10;
constexpr absl::Duration kHealthCheckInterval = absl::Milliseconds(200);
// Time to flush the producer after the gRPC server stopped, at least.
constexpr absl::Duration kMinFlushTime = absl::Seconds(1);
// Time finished calls get to send their last bytes before the rest are
// cancelled.
constexpr absl::Duration kFinishAllowance = absl::Milliseconds(500);

std::string WithPort(const std::string& address, int port) {
  if (absl::StartsWith(address, "unix:")) return address;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return address;
  return absl::StrCat(address.substr(0, colon + 1), port);
}

}  // namespace

std::map<std::string, std::string> ProducerProperties(const Config& config) {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", config.brokers},
      {"client.id", config.client_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      // One produce request in flight per broker. With more, librdkafka
      // loses acked events: when a first request fails retriably (a
      // partition whose leader is just being set up) and a later one for
      // the same partition succeeds (the broker accepts any first sequence
      // from a producer it does not know), librdkafka "implicitly acks" the
      // failed request's events and reports them delivered. Seen on the
      // real broker with 2.0.2: partition log starting at sequence 3,
      // events 0-2 acked. Still so in 2.8: ProducerDefaultsTest.
      // LibrdkafkaStillAcksLostEventsWithFiveInFlight.
      {"max.in.flight.requests.per.connection", "1"},
      // Every unary caller waits for its ack, so waiting to fill a batch is
      // latency for nothing at low rates; under load, batches fill anyway
      // while the one request in flight is out. Measured: librdkafka's
      // default of 5 ms -> 1 ms took publish-ack p50 from 5.2 to 1.2 ms at
      // 1,000 events/s and unary Publish with 64 calls in flight from ~10k
      // to ~25k events/s. 0 rather than 1: with any linger and one request
      // in flight, librdkafka 2.8's broker thread polls its socket with no
      // timeout (busy) while a batch waits (strace at 200 unary calls/s:
      // ~7,000 polls a second with 1 ms, ~460 with 0), and at 1,000 calls/s
      // the p50 went from 1.6 to 0.6 ms.
      {"linger.ms", "0"},
      // librdkafka's batch limit must fit the largest event we accept;
      // the default already does for events up to ~1 MB.
      {"message.max.bytes",
       absl::StrCat(std::max<int64_t>(1000000, config.max_event_bytes + 4096))},
      // Bounded memory: 64 MiB of records queued in librdkafka at most.
      {"queue.buffering.max.kbytes", "65536"},
      {"message.timeout.ms",
       absl::StrCat(absl::ToInt64Milliseconds(config.publish_timeout))},
      // A missing topic fails within seconds instead of 30 s.
      {"topic.metadata.propagation.max.ms", "2000"},
      // A produce request unanswered for 10 s is given up and retried
      // (idempotent: no duplicates), on the new leader if the broker hung.
      // With librdkafka's 60 s (capped at the message timeout, 30 s) the
      // partitions of a hung broker stall every publish until the deadline.
      // Measured in FaultTest.BrokerPausedForThirtySecondsUnderLoad: acks
      // 15-30 s into the hang went from 13 to ~10,000.
      {"socket.timeout.ms", "10000"},
      // librdkafka's statistics every 5 s feed the broker metrics
      // (eventbus_kafka_broker_*); 0 turns them off.
      {"statistics.interval.ms", "5000"},
  };
  for (const auto& [name, value] : config.kafka_properties) props[name] = value;
  for (const auto& [name, value] : config.producer_properties) {
    props[name] = value;
  }
  return props;
}

SubscribeOptions SubscribeOptionsFor(const Config& config) {
  SubscribeOptions options;
  options.consumer_properties = {
      {"bootstrap.servers", config.brokers},
      {"client.id", config.client_id},
      // Statistics every 5 s feed the lag metric
      // (eventbus_subscribe_lag_records); 0 turns it off.
      {"statistics.interval.ms", "5000"}};
  for (const auto& [name, value] : config.kafka_properties) {
    options.consumer_properties[name] = value;
  }
  for (const auto& [name, value] : config.consumer_properties) {
    options.consumer_properties[name] = value;
  }
  options.default_max_outstanding_messages =
      config.subscribe_max_outstanding_messages;
  options.max_outstanding_messages_cap =
      config.subscribe_max_outstanding_messages_cap;
  options.default_max_outstanding_bytes = config.subscribe_max_outstanding_bytes;
  options.max_outstanding_bytes_cap = config.subscribe_max_outstanding_bytes_cap;
  options.read_ahead_bytes = config.subscribe_read_ahead_bytes;
  options.max_streams = config.subscribe_max_streams;
  options.default_ack_deadline = config.subscribe_ack_deadline;
  options.default_max_delivery_attempts =
      static_cast<int>(config.subscribe_max_delivery_attempts);
  options.retry_backoff = config.subscribe_retry_backoff;
  options.retry_backoff_max = config.subscribe_retry_backoff_max;
  options.dead_letter_suffix = config.subscribe_dead_letter_suffix;
  options.dead_letter_timeout = config.publish_timeout;
  return options;
}

absl::StatusOr<std::unique_ptr<Sidecar>> Sidecar::Start(const Config& config) {
  std::unique_ptr<Sidecar> sidecar(new Sidecar(config));

  if (absl::Status tls = CheckTlsFiles(config); !tls.ok()) return tls;
  if (absl::StatusOr<kafka::RdKafkaConfPtr> consumer =
          kafka::MakeRdKafkaConf(SubscribeOptionsFor(config).consumer_properties);
      !consumer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka.consumer: ", consumer.status().message()));
  }
  kafka::ProducerOptions producer_options;
  producer_options.properties = ProducerProperties(config);
  producer_options.max_waiting_bytes =
      static_cast<size_t>(config.max_buffered_bytes);
  sidecar->broker_metrics_ = std::make_unique<BrokerMetrics>(sidecar->metrics_);
  producer_options.on_statistics =
      [metrics = sidecar->broker_metrics_.get()](const kafka::RdKafkaStats& s) {
        metrics->Update(s);
      };
  absl::StatusOr<std::unique_ptr<kafka::RdKafkaProducer>> producer =
      kafka::RdKafkaProducer::Create(std::move(producer_options));
  if (!producer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka.producer: ", producer.status().message()));
  }
  sidecar->producer_ = *std::move(producer);
  sidecar->publish_metrics_ =
      std::make_unique<PublishMetrics>(sidecar->metrics_);
  sidecar->metered_producer_ = std::make_unique<MeteredProducer>(
      sidecar->producer_.get(), sidecar->publish_metrics_.get());

  PublishOptions publish;
  publish.default_source = config.source;
  publish.structured_topics = std::set<std::string>(
      config.structured_topics.begin(), config.structured_topics.end());
  publish.max_event_bytes = config.max_event_bytes;
  publish.stream_max_in_flight = config.stream_max_in_flight;
  publish.publish_timeout = config.publish_timeout;
  sidecar->subscribe_metrics_ =
      std::make_unique<SubscribeMetrics>(sidecar->metrics_);
  sidecar->subscriptions_ = std::make_unique<Subscriptions>(
      sidecar->producer_.get(), SubscribeOptionsFor(config),
      sidecar->subscribe_metrics_.get());
  sidecar->service_ = std::make_unique<EventBusService>(
      sidecar->metered_producer_.get(), publish, sidecar->subscriptions_.get(),
      sidecar->publish_metrics_.get());

  // The admin client reaches Kafka as the producer does (its security
  // settings included).
  std::map<std::string, std::string> admin_properties = {
      {"bootstrap.servers", config.brokers},
      {"client.id", absl::StrCat(config.client_id, "-admin")}};
  for (const auto& [name, value] : config.kafka_properties) {
    admin_properties[name] = value;
  }
  for (const auto& [name, value] : config.producer_properties) {
    admin_properties[name] = value;
  }
  sidecar->admin_ = std::make_unique<kafka::Admin>(std::move(admin_properties));
  sidecar->admin_service_ = std::make_unique<AdminService>(
      sidecar->admin_.get(),
      AdminOptions{.allow_changes = config.admin_allow_changes});

  // gRPC's built-in health service answers; linking our copy of its
  // descriptors lets reflection describe it to grpcurl.
  grpc::health::v1::HealthCheckResponse::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<int> ports(config.listen.size(), 0);
  const std::vector<std::string> tls_addresses = TlsListenAddresses(config);
  std::shared_ptr<grpc::ServerCredentials> tls;
  if (!tls_addresses.empty()) tls = TlsServerCredentialsFor(config);
  for (size_t i = 0; i < config.listen.size(); ++i) {
    const bool secure = std::find(tls_addresses.begin(), tls_addresses.end(),
                                  config.listen[i]) != tls_addresses.end();
    builder.AddListeningPort(
        config.listen[i], secure ? tls : grpc::InsecureServerCredentials(),
        &ports[i]);
  }
  builder.RegisterService(sidecar->service_.get());
  builder.RegisterService(sidecar->admin_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<GrpcMetricsInterceptorFactory>(sidecar->metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::max<int64_t>(
      kGrpcDefaultMaxReceive, config.max_event_bytes + kGrpcFramingAllowance)));
  sidecar->server_ = builder.BuildAndStart();
  if (sidecar->server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", absl::StrJoin(config.listen, ", "),
                     " (address in use or invalid?)"));
  }
  for (size_t i = 0; i < config.listen.size(); ++i) {
    if (ports[i] == 0) {
      sidecar->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", config.listen[i], " (address in use or invalid?)"));
    }
    sidecar->addresses_.push_back(WithPort(config.listen[i], ports[i]));
    // gRPC creates a Unix socket with the process's umask: set its mode.
    if (absl::string_view path = config.listen[i];
        absl::ConsumePrefix(&path, "unix:") &&
        chmod(std::string(path).c_str(), UnixSocketMode(config)) != 0) {
      const int err = errno;
      sidecar->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat(
          "cannot set the mode of ", path, " to ", config.unix_socket_mode,
          " (server.unix_socket_mode): ", strerror(err)));
    }
  }
  sidecar->AddSidecarMetrics();
  if (!config.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(
            config.metrics_listen,
            {.metrics = [s = sidecar.get()] { return s->metrics_.Expose(); },
             .ready = [s = sidecar.get()] { return s->serving_.load(); }});
    if (!http.ok()) {
      sidecar->server_->Shutdown();
      return http.status();
    }
    sidecar->metrics_http_ = *std::move(http);
  }
  grpc::HealthCheckServiceInterface* health =
      sidecar->server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(std::string(kServiceName), false);
  // For liveness probes: SERVING while the process serves gRPC at all,
  // whatever Kafka does (restarting the sidecar would not bring Kafka back).
  health->SetServingStatus(std::string(kLivenessService), true);
  sidecar->health_thread_ =
      std::thread([s = sidecar.get()] {
        pthread_setname_np(pthread_self(), "eb-health");
        s->HealthLoop();
      });
  if (!tls_addresses.empty()) {
    std::vector<std::string> bound;
    for (size_t i = 0; i < config.listen.size(); ++i) {
      if (std::find(tls_addresses.begin(), tls_addresses.end(), config.listen[i]) !=
          tls_addresses.end()) {
        bound.push_back(sidecar->addresses_[i]);
      }
    }
    spdlog::info("TLS on {}{}; certificate {} (checked for changes every {})",
                 absl::StrJoin(bound, ", "),
                 config.tls_client_ca_file.empty()
                     ? ""
                     : absl::StrCat(", client certificates required (CA ",
                                    config.tls_client_ca_file, ")"),
                 config.tls_cert_file,
                 absl::FormatDuration(config.tls_reload_interval));
  }
  spdlog::info("eventbus-sidecar serving on {} (Kafka: {}){}",
               absl::StrJoin(sidecar->addresses_, ", "), config.brokers,
               sidecar->metrics_http_ == nullptr
                   ? ""
                   : absl::StrCat("; metrics on http://",
                                  sidecar->metrics_http_->address(),
                                  "/metrics"));
  return sidecar;
}

std::string Sidecar::metrics_address() const {
  return metrics_http_ == nullptr ? "" : metrics_http_->address();
}

void Sidecar::AddSidecarMetrics() {
  common::Gauge& connected =
      metrics_
          .AddGauge("eventbus_kafka_connected",
                    "1 while a Kafka broker answers the producer, else 0.")
          .With({});
  common::Gauge& waiting =
      metrics_
          .AddGauge("eventbus_publish_waiting_events",
                    "Events waiting for a broker or for room in the producer "
                    "queue (limits.max_buffered_bytes bounds their bytes).")
          .With({});
  common::Gauge& buffered =
      metrics_
          .AddGauge("eventbus_publish_buffered_bytes",
                    "Bytes of the events waiting for a broker or for room in "
                    "the producer queue.")
          .With({});
  common::Gauge& queued =
      metrics_
          .AddGauge("eventbus_kafka_producer_queue_events",
                    "Events in librdkafka's producer queue, not yet "
                    "acknowledged by Kafka.")
          .With({});
  common::Gauge& ready =
      metrics_
          .AddGauge("eventbus_ready",
                    "1 while gRPC health reports SERVING, else 0.")
          .With({});
  AddProcessMetrics(metrics_);
  metrics_.OnCollect([this, connected = &connected, waiting = &waiting,
                      buffered = &buffered, queued = &queued, ready = &ready] {
    connected->Set(producer_->Connected() ? 1 : 0);
    const kafka::RdKafkaProducer::Queues q = producer_->QueueDepths();
    waiting->Set(static_cast<double>(q.waiting));
    buffered->Set(static_cast<double>(q.waiting_bytes));
    queued->Set(q.librdkafka);
    ready->Set(serving_.load() ? 1 : 0);
    subscribe_metrics_->SetOutstanding(subscriptions_->OutstandingByGroup());
  });
}

Sidecar::~Sidecar() { Shutdown().IgnoreError(); }

void Sidecar::HealthLoop() {
  bool serving = false;
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const bool up = producer_->Connected();
    if (up != serving) {
      serving = up;
      serving_.store(serving);
      server_->GetHealthCheckService()->SetServingStatus(serving);
      server_->GetHealthCheckService()->SetServingStatus(
          std::string(kServiceName), serving);
      spdlog::info("health: {}", serving ? "SERVING" : "NOT_SERVING");
    }
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), kHealthCheckInterval);
  }
}

absl::Status Sidecar::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_ || stopping_) return shutdown_status_;
    stopping_ = true;
  }
  if (health_thread_.joinable()) health_thread_.join();
  const absl::Time deadline = absl::Now() + config_.shutdown_grace;
  if (server_ != nullptr) {
    spdlog::info("shutting down: draining calls for up to {}",
                 absl::FormatDuration(config_.shutdown_grace));
    server_->GetHealthCheckService()->SetServingStatus(false);
    serving_.store(false);
    service_->Drain();
    subscriptions_->Drain();
    admin_service_->Drain();
    // Events still waiting for Kafka at the deadline fail then, so that
    // their calls end and the server's shutdown below does not wait for
    // them past the grace period.
    if (producer_ != nullptr) producer_->BeginShutdown(deadline);
    // Publish calls decide how long shutdown takes; other calls (health
    // watches, reflection) must not hold it up to the grace period.
    // At the deadline the producer fails what is left; a moment more lets
    // those calls end with that status rather than a bare cancellation.
    const bool idle = service_->WaitIdle(deadline) ||
                      service_->WaitIdle(absl::Now() + kFinishAllowance);
    server_->Shutdown(absl::ToChronoTime(
        idle ? absl::Now() + kFinishAllowance : absl::Now()));
  }
  if (subscriptions_ != nullptr &&
      !subscriptions_->WaitClosed(std::max(deadline, absl::Now() + kMinFlushTime))) {
    spdlog::warn("shutting down: Kafka consumers still closing");
  }
  absl::Status status;
  if (producer_ != nullptr) {
    status = producer_->Shutdown(
        std::max(deadline - absl::Now(), kMinFlushTime));
  }
  if (status.ok()) {
    spdlog::info("shut down: every accepted event was delivered");
  } else {
    spdlog::error("shut down: {}", status.ToString());
  }
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  shutdown_status_ = status;
  return status;
}

}  // namespace eventbus::server
