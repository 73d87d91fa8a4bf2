#include "server/sidecar_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "server/event_codec.h"

namespace eventbus::server {
namespace {

constexpr absl::string_view kOtherTopics = "_other";
constexpr absl::string_view kInvalidTopic = "_invalid";
constexpr absl::string_view kOtherMethod = "_other";

}  // namespace

// ---- publish ----

PublishMetrics::PublishMetrics(common::Registry& registry)
    : events_(registry.AddCounter(
          "eventbus_publish_events_total",
          "Events published, by topic and result code (OK when Kafka "
          "acknowledged the event).",
          {"topic", "code"})),
      bytes_(registry.AddCounter(
          "eventbus_publish_bytes_total",
          "Bytes (key, value and headers) of events Kafka acknowledged, by "
          "topic.",
          {"topic"})),
      latency_(registry.AddHistogram(
          "eventbus_publish_latency_seconds",
          "Time from handing an event to Kafka to Kafka's acknowledgement "
          "(or failure), by topic.",
          {"topic"}, &common::LatencySecondsBuckets())),
      in_flight_(registry
                     .AddGauge("eventbus_publish_in_flight_events",
                               "Events handed to Kafka and not yet answered.")
                     .With({})) {}

PublishMetrics::Topic::Topic(PublishMetrics* owner, std::string label)
    : owner_(owner),
      label_(std::move(label)),
      bytes_(owner->bytes_.With({label_})),
      latency_(owner->latency_.With({label_})) {}

void PublishMetrics::Topic::Count(absl::StatusCode code) {
  const size_t i = static_cast<size_t>(code);
  if (i >= events_.size()) return;
  common::Counter* c = events_[i].load(std::memory_order_acquire);
  if (c == nullptr) {
    // Two threads may both look it up: With returns the same series.
    c = &owner_->events_.With({label_, absl::StatusCodeToString(code)});
    events_[i].store(c, std::memory_order_release);
  }
  c->Add();
}

PublishMetrics::Topic& PublishMetrics::ForTopic(absl::string_view topic) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = topics_.find(topic);
    if (it != topics_.end()) return *it->second;
  }
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  if (it != topics_.end()) return *it->second;
  // Past the cap, and for names Kafka refuses, one shared series.
  absl::string_view label = topic;
  if (!ValidateTopicName(topic).ok()) {
    label = kInvalidTopic;
  } else if (topics_.size() >= kMaxTopicLabels) {
    label = kOtherTopics;
  }
  if (label != topic) {
    auto shared = topics_.find(label);
    if (shared == topics_.end()) {
      shared = topics_
                   .emplace(std::string(label),
                            std::unique_ptr<Topic>(new Topic(this, std::string(label))))
                   .first;
    }
    return *shared->second;
  }
  return *topics_
              .emplace(std::string(topic),
                       std::unique_ptr<Topic>(new Topic(this, std::string(topic))))
              .first->second;
}

void PublishMetrics::Refused(absl::string_view topic,
                             const absl::Status& status) {
  ForTopic(topic).Count(status.code());
}

void PublishMetrics::Delivered(Topic& topic, const absl::Status& status,
                               size_t bytes, absl::Duration latency) {
  topic.Count(status.code());
  if (status.ok()) topic.bytes_.Add(bytes);
  topic.latency_.Observe(absl::ToDoubleSeconds(latency));
}

absl::Status MeteredProducer::Produce(kafka::Record record, absl::Time deadline,
                                      kafka::DeliveryCallback done) {
  PublishMetrics::Topic& topic = metrics_->ForTopic(record.topic);
  const size_t bytes = record.PayloadBytes();
  const absl::Time start = absl::Now();
  metrics_->in_flight().Add(1);
  absl::Status status = inner_->Produce(
      std::move(record), deadline,
      [metrics = metrics_, &topic, bytes, start,
       done = std::move(done)](kafka::DeliveryResult result) mutable {
        metrics->in_flight().Add(-1);
        metrics->Delivered(topic, result.status, bytes, absl::Now() - start);
        std::move(done)(std::move(result));
      });
  if (!status.ok()) metrics_->in_flight().Add(-1);
  return status;
}

// ---- subscribe ----

SubscribeMetrics::SubscribeMetrics(common::Registry& registry)
    : streams_(registry.AddGauge("eventbus_subscribe_streams",
                                 "Open Subscribe streams, by consumer group.",
                                 {"group"})),
      deliveries_(registry.AddCounter(
          "eventbus_subscribe_deliveries_total",
          "Deliveries sent to Subscribe clients (redeliveries included).",
          {"group", "topic"})),
      acks_(registry.AddCounter("eventbus_subscribe_acks_total",
                                "Deliveries acknowledged by the client.",
                                {"group", "topic"})),
      nacks_(registry.AddCounter("eventbus_subscribe_nacks_total",
                                 "Deliveries nacked by the client.",
                                 {"group", "topic"})),
      redeliveries_(registry.AddCounter(
          "eventbus_subscribe_redeliveries_total",
          "Events scheduled for another delivery, by reason: nack or "
          "deadline (the ack deadline passed).",
          {"group", "topic", "reason"})),
      dead_lettered_(registry.AddCounter(
          "eventbus_subscribe_dead_lettered_total",
          "Events written to the dead-letter topic.", {"group", "topic"})),
      outstanding_(registry.AddGauge(
          "eventbus_subscribe_outstanding_deliveries",
          "Deliveries sent and not yet acked, nacked or expired.",
          {"group"})),
      delivery_latency_(registry.AddHistogram(
          "eventbus_subscribe_delivery_latency_seconds",
          "Consumer latency: from the record's Kafka timestamp to its first "
          "delivery to a client.",
          {"group", "topic"}, &common::LatencySecondsBuckets())),
      ack_latency_(registry.AddHistogram(
          "eventbus_subscribe_ack_latency_seconds",
          "From a delivery to the client's ack.", {"group", "topic"},
          &common::LatencySecondsBuckets())),
      lag_(registry.AddGauge(
          "eventbus_subscribe_lag_records",
          "Consumer lag: the partition's high watermark minus the group's "
          "committed offset, for the partitions this sidecar's Subscribe "
          "streams fetch.",
          {"group", "topic", "partition"})) {}

std::string SubscribeMetrics::GroupLabel(absl::string_view group) {
  absl::MutexLock lock(&mu_);
  if (groups_.count(group)) return std::string(group);
  if (groups_.size() >= kMaxGroupLabels) return std::string(kOtherTopics);
  return *groups_.emplace(group).first;
}

void SubscribeMetrics::SetOutstanding(
    const std::map<std::string, int64_t>& by_group) {
  outstanding_.RemoveIf([&by_group](absl::Span<const std::string> labels) {
    return by_group.count(labels[0]) == 0;
  });
  for (const auto& [group, n] : by_group) {
    outstanding_.With({group}).Set(static_cast<double>(n));
  }
}

// One stream's observer: its series per topic, looked up once. Called with
// the consumer's lock held, so one call at a time.
class SubscribeMetrics::Stream final : public kafka::ConsumerObserver {
 public:
  Stream(SubscribeMetrics* owner, std::string group)
      : owner_(owner),
        group_(std::move(group)),
        open_(owner->streams_.With({group_})) {
    open_.Add(1);
  }
  ~Stream() override {
    open_.Add(-1);
    PartitionLags({});
  }

  void PartitionLags(const std::vector<kafka::PartitionLag>& lags) override {
    std::set<std::vector<std::string>> now;
    for (const kafka::PartitionLag& l : lags) {
      now.insert({group_, l.topic, absl::StrCat(l.partition)});
    }
    absl::MutexLock lock(&owner_->mu_);
    for (const kafka::PartitionLag& l : lags) {
      const std::string partition = absl::StrCat(l.partition);
      owner_->lag_owners_[{group_, l.topic, partition}] = this;
      owner_->lag_.With({group_, l.topic, partition})
          .Set(static_cast<double>(l.lag));
    }
    for (const auto& key : reported_) {
      if (now.count(key)) continue;
      auto it = owner_->lag_owners_.find(key);
      if (it == owner_->lag_owners_.end() || it->second != this) continue;
      owner_->lag_owners_.erase(it);
      owner_->lag_.Remove(std::vector<absl::string_view>(key.begin(), key.end()));
    }
    reported_ = std::move(now);
  }

  void Delivered(const kafka::InboundRecord& record, int attempt,
                 absl::Time now) override {
    Series& s = For(record.topic);
    s.deliveries->Add();
    if (attempt == 1 && record.timestamp_ms >= 0) {
      const double latency =
          absl::ToDoubleSeconds(now - absl::FromUnixMillis(record.timestamp_ms));
      s.delivery_latency->Observe(std::max(latency, 0.0));
    }
  }
  void Acked(const kafka::InboundRecord& record,
             absl::Duration since_delivery) override {
    Series& s = For(record.topic);
    s.acks->Add();
    s.ack_latency->Observe(absl::ToDoubleSeconds(since_delivery));
  }
  void Nacked(const kafka::InboundRecord& record) override {
    For(record.topic).nacks->Add();
  }
  void Redelivering(const kafka::InboundRecord& record,
                    kafka::RedeliveryReason reason) override {
    Series& s = For(record.topic);
    (reason == kafka::RedeliveryReason::kNack ? s.redelivered_nack
                                              : s.redelivered_deadline)
        ->Add();
  }
  void DeadLettered(const kafka::InboundRecord& record) override {
    For(record.topic).dead_lettered->Add();
  }

 private:
  struct Series {
    common::Counter* deliveries;
    common::Counter* acks;
    common::Counter* nacks;
    common::Counter* redelivered_nack;
    common::Counter* redelivered_deadline;
    common::Counter* dead_lettered;
    common::Histogram* delivery_latency;
    common::Histogram* ack_latency;
  };

  Series& For(absl::string_view topic) {
    // Most streams read one topic: its series without a lookup.
    if (last_ != nullptr && topic == last_topic_) return *last_;
    auto it = topics_.find(topic);
    if (it != topics_.end()) {
      last_topic_ = it->first;
      last_ = &it->second;
      return it->second;
    }
    const absl::string_view g = group_;
    Series s{&owner_->deliveries_.With({g, topic}),
             &owner_->acks_.With({g, topic}),
             &owner_->nacks_.With({g, topic}),
             &owner_->redeliveries_.With({g, topic, "nack"}),
             &owner_->redeliveries_.With({g, topic, "deadline"}),
             &owner_->dead_lettered_.With({g, topic}),
             &owner_->delivery_latency_.With({g, topic}),
             &owner_->ack_latency_.With({g, topic})};
    auto [added, inserted] = topics_.emplace(std::string(topic), s);
    last_topic_ = added->first;
    last_ = &added->second;
    return added->second;
  }

  SubscribeMetrics* const owner_;
  const std::string group_;
  common::Gauge& open_;
  // The lag series it set last ({group, topic, partition}).
  std::set<std::vector<std::string>> reported_;
  // A stream's topics are the ones it subscribed to: few. node_hash_map:
  // last_ and last_topic_ stay valid as it grows.
  absl::node_hash_map<std::string, Series> topics_;
  absl::string_view last_topic_;
  Series* last_ = nullptr;
};

std::unique_ptr<kafka::ConsumerObserver> SubscribeMetrics::StreamObserver(
    absl::string_view group) {
  return std::make_unique<Stream>(this, GroupLabel(group));
}

// ---- brokers ----

BrokerMetrics::BrokerMetrics(common::Registry& registry)
    : up_(registry.AddGauge("eventbus_kafka_broker_up",
                            "1 while the producer is connected to the broker.",
                            {"broker"})),
      rtt_avg_(registry.AddGauge(
          "eventbus_kafka_broker_rtt_avg_seconds",
          "Average request round-trip time to the broker (librdkafka "
          "statistics, last interval).",
          {"broker"})),
      rtt_p99_(registry.AddGauge(
          "eventbus_kafka_broker_rtt_p99_seconds",
          "99th percentile request round-trip time to the broker (last "
          "interval).",
          {"broker"})),
      outbuf_(registry.AddGauge("eventbus_kafka_broker_outbuf_requests",
                                "Requests waiting to be sent to the broker.",
                                {"broker"})),
      waitresp_(registry.AddGauge(
          "eventbus_kafka_broker_waitresp_requests",
          "Requests sent to the broker, waiting for its response.",
          {"broker"})),
      retries_(registry.AddSampledCounter(
          "eventbus_kafka_broker_retries_total",
          "Requests sent to the broker again.", {"broker"})),
      timeouts_(registry.AddSampledCounter(
          "eventbus_kafka_broker_timeouts_total",
          "Requests to the broker that timed out.", {"broker"})),
      disconnects_(registry.AddSampledCounter(
          "eventbus_kafka_broker_disconnects_total",
          "Connections to the broker that were lost.", {"broker"})) {
  families_ = {&up_,      &rtt_avg_,  &rtt_p99_, &outbuf_,
               &waitresp_, &retries_, &timeouts_, &disconnects_};
}

void BrokerMetrics::Update(const kafka::RdKafkaStats& stats) {
  std::set<std::string, std::less<>> listed;
  for (const kafka::BrokerStats& b : stats.brokers) {
    listed.insert(b.name);
    const absl::string_view broker = b.name;
    up_.With({broker}).Set(b.up ? 1 : 0);
    rtt_avg_.With({broker}).Set(b.rtt_avg_seconds);
    rtt_p99_.With({broker}).Set(b.rtt_p99_seconds);
    outbuf_.With({broker}).Set(static_cast<double>(b.outbuf_requests));
    waitresp_.With({broker}).Set(static_cast<double>(b.waitresp_requests));
    retries_.With({broker}).Set(static_cast<double>(b.retries));
    timeouts_.With({broker}).Set(static_cast<double>(b.timeouts));
    disconnects_.With({broker}).Set(static_cast<double>(b.disconnects));
  }
  for (common::Family<common::Gauge>* f : families_) {
    f->RemoveIf([&listed](absl::Span<const std::string> labels) {
      return listed.count(labels[0]) == 0;
    });
  }
}

// ---- gRPC ----

namespace {

// The methods the sidecar serves; others (a client's typo) share one label.
const std::set<std::string, std::less<>>& KnownMethods() {
  static const auto* kMethods = [] {
    auto* methods = new std::set<std::string, std::less<>>;
    const google::protobuf::DescriptorPool* pool =
        google::protobuf::DescriptorPool::generated_pool();
    for (const char* service :
         {"eventbus.v1.EventBus", "eventbus.v1.Admin", "grpc.health.v1.Health",
          "grpc.reflection.v1alpha.ServerReflection"}) {
      const google::protobuf::ServiceDescriptor* s =
          pool->FindServiceByName(service);
      if (s == nullptr) continue;
      for (int i = 0; i < s->method_count(); ++i) {
        methods->insert(absl::StrCat("/", service, "/", s->method(i)->name()));
      }
    }
    return methods;
  }();
  return *kMethods;
}

}  // namespace

class GrpcMetricsInterceptorFactory::Interceptor final
    : public grpc::experimental::Interceptor {
 public:
  Interceptor(GrpcMetricsInterceptorFactory* factory,
              grpc::experimental::ServerRpcInfo* info)
      : factory_(factory),
        method_(KnownMethods().count(absl::string_view(info->method()))
                    ? absl::string_view(info->method())
                    : kOtherMethod),
        open_(info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY
                  ? &factory->open_streams_.With({method_})
                  : nullptr) {
    if (open_ != nullptr) open_->Add(1);
  }
  ~Interceptor() override {
    if (open_ != nullptr) open_->Add(-1);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      factory_->handled_
          .With({method_, absl::StatusCodeToString(
                              static_cast<absl::StatusCode>(status.error_code()))})
          .Add();
    }
    methods->Proceed();
  }

 private:
  GrpcMetricsInterceptorFactory* const factory_;
  const absl::string_view method_;
  common::Gauge* const open_;
};

GrpcMetricsInterceptorFactory::GrpcMetricsInterceptorFactory(
    common::Registry& registry)
    : handled_(registry.AddCounter(
          "eventbus_grpc_handled_total",
          "gRPC calls completed, by method and status code.",
          {"method", "code"})),
      open_streams_(registry.AddGauge(
          "eventbus_grpc_open_streams",
          "Streaming gRPC calls in progress, by method.", {"method"})) {}

grpc::experimental::Interceptor*
GrpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new Interceptor(this, info);
}

// ---- process ----

namespace {

struct ProcStat {
  double cpu_seconds = 0;
  double start_time_seconds = 0;
  double threads = 0;
  double virtual_bytes = 0;
  double resident_bytes = 0;
};

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// /proc/self/stat, after the command (which may hold spaces) in parentheses.
bool ReadProcStat(ProcStat* out) {
  static const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double kPage = static_cast<double>(sysconf(_SC_PAGESIZE));
  static const double kBootTime = [] {
    for (absl::string_view line :
         absl::StrSplit(ReadFile("/proc/stat"), '\n')) {
      double t;
      if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &t)) {
        return t;
      }
    }
    return 0.0;
  }();
  const std::string stat = ReadFile("/proc/self/stat");
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  // Fields from the state (field 3) on; index 0 is field 3.
  const std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ');
  if (f.size() < 22) return false;
  double utime, stime, threads, start, vsize, rss;
  if (!absl::SimpleAtod(f[11], &utime) || !absl::SimpleAtod(f[12], &stime) ||
      !absl::SimpleAtod(f[17], &threads) || !absl::SimpleAtod(f[19], &start) ||
      !absl::SimpleAtod(f[20], &vsize) || !absl::SimpleAtod(f[21], &rss)) {
    return false;
  }
  out->cpu_seconds = (utime + stime) / kTicks;
  out->threads = threads;
  out->start_time_seconds = kBootTime + start / kTicks;
  out->virtual_bytes = vsize;
  out->resident_bytes = rss * kPage;
  return true;
}

double OpenFds() {
  std::error_code ec;
  double n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

void AddProcessMetrics(common::Registry& registry) {
  struct Series {
    common::Gauge* cpu;
    common::Gauge* resident;
    common::Gauge* virt;
    common::Gauge* fds;
    common::Gauge* max_fds;
    common::Gauge* threads;
    common::Gauge* start;
  };
  const Series m{
      &registry
           .AddSampledCounter("process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.")
           .With({}),
      &registry
           .AddGauge("process_resident_memory_bytes",
                     "Resident memory size in bytes.")
           .With({}),
      &registry
           .AddGauge("process_virtual_memory_bytes",
                     "Virtual memory size in bytes.")
           .With({}),
      &registry.AddGauge("process_open_fds", "Number of open file descriptors.")
           .With({}),
      &registry
           .AddGauge("process_max_fds",
                     "Maximum number of open file descriptors.")
           .With({}),
      &registry.AddGauge("process_threads", "Number of OS threads.").With({}),
      &registry
           .AddGauge("process_start_time_seconds",
                     "Start time of the process since unix epoch in seconds.")
           .With({}),
  };
  registry.OnCollect([m] {
    ProcStat s;
    if (ReadProcStat(&s)) {
      m.cpu->Set(s.cpu_seconds);
      m.resident->Set(s.resident_bytes);
      m.virt->Set(s.virtual_bytes);
      m.threads->Set(s.threads);
      m.start->Set(s.start_time_seconds);
    }
    m.fds->Set(OpenFds());
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      m.max_fds->Set(static_cast<double>(limit.rlim_cur));
    }
  });
}

}  // namespace eventbus::server
