// eventbus-bench: throughput, latency, memory and CPU of the sidecar next to
// plain librdkafka, on the same Kafka with the same producer settings.
//
// The sidecar is the eventbus-sidecar binary, run as a process of its own
// (its CPU time and memory are read from /proc); the gRPC floor is this
// binary run with --serve-floor: a process whose EventBus service answers
// every publish at once, without Kafka and without eventbus's work, i.e.
// what gRPC and Protobuf alone cost per message on this machine.
//
// Publish throughput, event data of 100 B and 1 KiB, a fresh topic of 6
// partitions per size:
//   direct          kafka::RdKafkaProducer with the sidecar's producer
//                   properties, as fast as its queue allows;
//   direct c64      the same with 64 events in flight at most, each waiting
//                   for its acknowledgement: what unary c64 asks of Kafka,
//                   and the baseline of its "vs direct";
//   stream b100     PublishStream, 100 events per message
//                   (client::Publisher::PublishAsync);
//   stream b1       the same with 1 event per message;
//   unary c64       unary Publish, 64 calls in flight (callback API);
//   floor ...       the same three gRPC scenarios against the floor;
//   floor unary c64 from thread
//                   the floor's unary calls finished from a thread of the
//                   floor's own, as the sidecar finishes them from
//                   librdkafka's delivery-report thread;
//   sidecar plain b100, floor plain b100
//                   what a plain client sends: PublishStream with 100
//                   events per message, events without id and time (the
//                   sidecar fills both), 50 keys.
// Direct and sidecar scenarios alternate within each run (direct runs before
// each sidecar scenario); the table shows the median of the runs. MB/s
// counts event data bytes only; "app cpu", "srv cpu" and "kafka cpu" are
// the CPU time per 1,000 events of this process (the application:
// librdkafka when direct, the gRPC client otherwise), of the server process
// and of the broker (with --broker-pid), from /proc (10 ms ticks: rough for
// runs shorter than a second).
//
// Subscribe throughput, 100 B and 1 KiB, from a topic of 6 partitions filled
// first by the direct producer (N + warm-up events); each run reads all of
// it in a new group from the earliest offset, the rate taken from the first
// message to the last:
//   consume direct     a plain librdkafka group consumer (the GroupConsumer's
//                      fetch settings) reading each record's headers (the
//                      event's ce_ attributes), storing the offset of every
//                      message, auto-commit, a final commit;
//   sidecar subscribe  Subscribe with client::Subscriber, auto-ack, default
//                      flow control;
//   floor subscribe    the same against the floor, which feeds copies of the
//                      delivery the sidecar would send, 1,000 outstanding
//                      and 500 per write like the sidecar.
//
// Latency, open loop, 100 B events, 1,000 and 10,000 events/s for 3 s
// (smoke: 1,000/s for 0.5 s): event i is sent at start + i / rate whatever
// has completed, and its latency counted from that scheduled time, so a
// stall shows instead of hiding. publish-ack: until the producer (direct) or
// PublishStream with 1 event per message (sidecar) acknowledges it;
// end-to-end: until a consumer in a new group receives it (direct: a
// librdkafka consumer; sidecar: Subscribe), the scheduled time travelling in
// the event data. p50/p99/p99.9 from a log-bucketed histogram (histogram.h,
// < 0.8% error), merged over the runs; "added" = sidecar - direct.
//
// Sidecar resources: the peak RSS of the sidecar above over all of that;
// then a fresh sidecar process: RSS idle, RSS peak and CPU per 1,000 events
// while 10,000 events/s of 1 KiB are published (5 s), then published and
// subscribed at once (5 s).
//
// CPU at fixed rates (the rates group), 100 B events, open loop at 100,
// 1,000 and 10,000 events/s for 5 s each (smoke: 1,000/s for 1 s), the
// shape most services have: direct (the sidecar's producer settings),
// direct with librdkafka's defaults (idempotent, nothing else set), unary
// Publish with 16 calls in flight at most (as ghz -c 16 --rps R runs it)
// and PublishStream with 1 event per message, through the sidecar and
// against the floor. Each process's CPU (server, application, broker) in
// mCPU and per event, and the latency to the acknowledgement; then the
// targets at 1,000/s.
//
// --only publish|subscribe|latency|rates|resources runs one group
// (repeatable).
//
// Usage: eventbus-bench [--brokers HOST:PORT] [--events N] [--runs R]
//                       [--smoke] [--json PATH] [--only GROUP] [--sidecar PATH]
//                       [--broker-pid PID]
// With --broker-pid, the throughput tables also show the broker's CPU per
// 1,000 events (deploy/bench.sh passes the pid of the Kafka it starts).
// Exits 0 when every scenario ran and every event was published; 1 when an
// event failed or a scenario could not run; 2 for bad arguments. It asserts
// no timing: the targets are read from the table.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cpp/channel.h"
#include "client/cpp/publisher.h"
#include "client/cpp/subscriber.h"
#include "common/json_text.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "kafka/rdkafka_handles.h"
#include "kafka/rdkafka_producer.h"
#include "server/config.h"
#include "server/event_bus_service.h"
#include "server/event_codec.h"
#include "server/sidecar.h"
#include "spdlog/spdlog.h"
#include "tests/bench/histogram.h"
#include "tests/bench/child_process.h"
#include "tests/bench/floor_service.h"

namespace eventbus::bench {

using ::eventbus::common::AppendJsonString;

namespace {

constexpr int kPartitions = 6;
constexpr int kKeys = 1024;
constexpr int64_t kWarmupEvents = 100;
// Events in flight at most: the direct producer's window, and the stream
// client's buffer (the sidecar's default limits.stream_max_in_flight).
constexpr int64_t kDirectWindow = 100000;
constexpr int64_t kStreamWindow = 10000;
constexpr int kUnaryConcurrency = 64;
// A scenario whose events have not all completed by then failed.
constexpr absl::Duration kScenarioTimeout = absl::Minutes(5);
constexpr char kSource[] = "//eventbus/bench";
constexpr char kType[] = "com.example.bench";
// Latency scenarios, each sidecar one next to its direct one.
constexpr char kAckDirect[] = "publish-ack direct";
constexpr char kAckSidecar[] = "publish-ack sidecar b1";
constexpr char kE2eDirect[] = "end-to-end direct";
constexpr char kE2eSidecar[] = "end-to-end sidecar";
constexpr std::pair<const char*, const char*> kLatencyPairs[] = {
    {kAckDirect, kAckSidecar}, {kE2eDirect, kE2eSidecar}};
// Fixed-rate scenarios (the rates group), 100 B events.
constexpr int kRateConcurrency = 16;
constexpr char kRateDirect[] = "direct";
constexpr char kRateDirectDefaults[] = "direct, librdkafka defaults";
constexpr char kRateUnary[] = "sidecar unary c16";
constexpr char kRateStream[] = "sidecar stream b1";
constexpr char kRateFloorUnary[] = "floor unary c16";
constexpr char kRateFloorStream[] = "floor stream b1";

struct Options {
  std::string brokers;
  int64_t events = 200000;
  int runs = 2;
  bool smoke = false;
  std::string json_path;
  std::string sidecar_binary = EVENTBUS_SIDECAR_BINARY;
  // Started as `floor_program --serve-floor ADDRESS`.
  std::string floor_program = "/proc/self/exe";
  // The Kafka broker's process, whose CPU time per scenario is reported
  // (0: not reported).
  pid_t broker_pid = 0;
  // Scenario groups to run: publish, subscribe, latency, rates, resources;
  // empty = all.
  std::vector<std::string> only;
  // Publish scenarios to run, by name ("sidecar stream b100"); empty = all.
  // For profiling one of them.
  std::vector<std::string> scenarios;

  bool Wants(const std::string& group) const {
    return only.empty() ||
           std::find(only.begin(), only.end(), group) != only.end();
  }
  bool WantsScenario(const std::string& name) const {
    return scenarios.empty() ||
           std::find(scenarios.begin(), scenarios.end(), name) != scenarios.end();
  }
};

// Counts the outcomes of one scenario's events and bounds how many are in
// flight. Thread-safe: End runs on producer and gRPC threads.
class Flight {
 public:
  explicit Flight(int64_t window) : window_(window) {}

  // Waits for room in the window; false when `deadline` passed first.
  bool Begin(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ < window_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline)) return false;
    ++in_flight_;
    return true;
  }

  // One event finished with `status`.
  void End(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    ++done_;
    if (status.ok()) return;
    ++failed_;
    if (first_error_.empty()) first_error_ = status.ToString();
  }

  // Waits until `n` events finished; false when `deadline` passed first.
  bool WaitDone(int64_t n, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto all = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_ >= n;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&all), deadline);
  }

  int64_t done() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  int64_t failed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return failed_;
  }
  std::string first_error() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }

 private:
  const int64_t window_;
  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// One timed pass of one scenario.
struct Measurement {
  int64_t events = 0;  // events published OK in the timed part
  absl::Duration elapsed;
  int64_t failed = 0;  // events that failed, warm-up included
  std::string error;   // why the scenario failed, when it did
  // Subscribe: the longest pause between two deliveries and the pauses of
  // 100 ms or more (-1: not measured).
  double longest_pause_ms = -1;
  int64_t long_pauses = -1;
  // CPU seconds spent on the scenario by this process (the application:
  // librdkafka for direct scenarios, the gRPC client for the others), by
  // the server process (sidecar or floor; -1 for direct scenarios) and by
  // the Kafka broker (-1 when its process is not known).
  double app_cpu_seconds = -1;
  double server_cpu_seconds = -1;
  double broker_cpu_seconds = -1;

  double PerThousand(double cpu_seconds) const {
    return cpu_seconds >= 0 && events > 0
               ? cpu_seconds * 1e6 / static_cast<double>(events)
               : -1;
  }

  double EventsPerSecond() const {
    const double s = absl::ToDoubleSeconds(elapsed);
    return s > 0 ? static_cast<double>(events) / s : 0;
  }
};

// The events one scenario publishes: event i has key "key-<i % 1024>", id
// "bench-<i>" and `payload` bytes of data. Plain events are what a plain
// client sends: no id and no time (the sidecar fills both), key
// "key-<i % 50>".
class Events {
 public:
  enum class Kind { kFull, kPlain };
  Events(std::string topic, size_t payload, Kind kind = Kind::kFull)
      : topic_(std::move(topic)), kind_(kind) {
    data_.assign(payload, 'x');
    for (size_t i = 0; i < payload; ++i) data_[i] = 'a' + static_cast<char>(i % 26);
  }

  const std::string& topic() const { return topic_; }
  size_t payload() const { return data_.size(); }

  v1::PublishRequest Request(int64_t i) const {
    v1::PublishRequest request;
    request.set_topic(topic_);
    v1::Event* event = request.mutable_event();
    if (kind_ == Kind::kPlain) {
      request.set_key(absl::StrCat("key-", i % kPlainKeys));
    } else {
      request.set_key(absl::StrCat("key-", i % kKeys));
      event->set_id(absl::StrCat("bench-", i));
    }
    event->set_source(kSource);
    event->set_type(kType);
    event->set_data_content_type("application/octet-stream");
    event->set_data(data_);
    return request;
  }

  // The record the sidecar would write for event i (binary mode, the same
  // ce_* headers), encoded by the sidecar's own codec.
  absl::StatusOr<kafka::Record> Record(int64_t i) const {
    v1::PublishRequest request = Request(i);
    absl::Status prepared =
        server::PrepareRequest(request, kSource, absl::Now());
    if (!prepared.ok()) return prepared;
    return server::EncodeRecord(request, server::ContentMode::kBinary,
                                1000000);
  }

 private:
  static constexpr int kPlainKeys = 50;
  std::string topic_;
  Kind kind_;
  std::string data_;
};

std::string RandomSuffix() {
  std::random_device rd;
  return absl::StrFormat("%08x", rd());
}

// Creates `topic` with `partitions` partitions with librdkafka's admin API.
absl::Status CreateTopic(const std::string& brokers, const std::string& topic,
                         int partitions) {
  absl::StatusOr<kafka::RdKafkaConfPtr> conf =
      kafka::MakeRdKafkaConf({{"bootstrap.servers", brokers}});
  if (!conf.ok()) return conf.status();
  char errstr[512];
  kafka::RdKafkaPtr rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof(errstr)));
  if (rk == nullptr) return absl::InternalError(errstr);
  conf->release();  // owned by rk now

  rd_kafka_NewTopic_t* new_topic = rd_kafka_NewTopic_new(
      topic.c_str(), partitions, 1, errstr, sizeof(errstr));
  if (new_topic == nullptr) return absl::InvalidArgumentError(errstr);
  kafka::RdKafkaQueuePtr queue(rd_kafka_queue_new(rk.get()));
  rd_kafka_CreateTopics(rk.get(), &new_topic, 1, nullptr, queue.get());
  rd_kafka_NewTopic_destroy(new_topic);

  kafka::RdKafkaEventPtr event(rd_kafka_queue_poll(queue.get(), 30000));
  if (event == nullptr) {
    return absl::DeadlineExceededError("CreateTopics: no answer in 30 s");
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("CreateTopics: ", rd_kafka_event_error_string(event.get())));
  }
  const rd_kafka_CreateTopics_result_t* result =
      rd_kafka_event_CreateTopics_result(event.get());
  size_t count = 0;
  const rd_kafka_topic_result_t** topics =
      rd_kafka_CreateTopics_result_topics(result, &count);
  for (size_t i = 0; i < count; ++i) {
    if (rd_kafka_topic_result_error(topics[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          absl::StrCat("CreateTopics ", topic, ": ",
                       rd_kafka_topic_result_error_string(topics[i])));
    }
  }
  return absl::OkStatus();
}

bool WaitConnected(const kafka::Producer& producer, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!producer.Connected()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// Runs `publish(i, flight)` for a warm-up of kWarmupEvents, waits for them,
// then times `n` more. `publish` must end every event it begins with
// flight.End exactly once.
template <typename PublishFn>
Measurement Timed(int64_t n, int64_t window, PublishFn publish) {
  Measurement m;
  auto owned = std::make_unique<Flight>(window);
  Flight& flight = *owned;
  const absl::Time deadline = absl::Now() + kScenarioTimeout;
  int64_t begun = 0;
  auto run = [&](int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      if (!flight.Begin(deadline)) return false;
      publish(begun++, flight);
    }
    return flight.WaitDone(begun, deadline);
  };
  if (!run(kWarmupEvents)) {
    m.error = "warm-up timed out";
  } else {
    const int64_t failed_before = flight.failed();
    const absl::Time start = absl::Now();
    const bool finished = run(n);
    m.elapsed = absl::Now() - start;
    m.events = n - (flight.failed() - failed_before);
    if (!finished) {
      m.error = absl::StrCat("timed out with ", begun - flight.done(),
                             " events in flight");
    }
  }
  m.failed = flight.failed();
  // Events still in flight after a timeout complete later, into the Flight:
  // leak it rather than free it under them (the run fails anyway).
  if (!m.error.empty()) owned.release();
  if (m.failed > 0 && m.error.empty()) {
    m.error = absl::StrCat(m.failed, " events failed, first: ",
                           flight.first_error());
  }
  return m;
}

// Scenario 1: the project's librdkafka producer, no gRPC.
// `in_flight`: events produced and not yet acknowledged at most; 0 for as
// many as the producer's queue holds (the throughput of an application that
// never waits), kUnaryConcurrency for what unary Publish with that many
// calls asks of Kafka (each event waits for its acknowledgement).
Measurement RunDirect(kafka::RdKafkaProducer& producer, const Events& events,
                      int64_t n, int64_t in_flight = 0) {
  absl::StatusOr<kafka::Record> record = events.Record(0);
  if (!record.ok()) return Measurement{.error = record.status().ToString()};
  const std::string id_header = "ce_id";
  // In bytes too: the producer's queue and wait buffer are bounded (64 MiB
  // each), and a window past them gets RESOURCE_EXHAUSTED.
  const int64_t window =
      in_flight > 0 ? in_flight
                    : std::min<int64_t>(kDirectWindow,
                                        (int64_t{48} << 20) /
                                            static_cast<int64_t>(events.payload() + 200));
  return Timed(n, window, [&](int64_t i, Flight& flight) {
    kafka::Record r = *record;
    r.key = absl::StrCat("key-", i % kKeys);
    for (kafka::Header& h : r.headers) {
      if (h.name == id_header) h.value = absl::StrCat("bench-", i);
    }
    absl::Status accepted = producer.Produce(
        std::move(r), absl::Now() + absl::Seconds(60),
        [&flight](kafka::DeliveryResult result) { flight.End(result.status); });
    if (!accepted.ok()) flight.End(accepted);
  });
}

// Scenario 2: PublishStream through client::Publisher with `batch_size`
// events per message at most.
Measurement RunStream(const std::shared_ptr<grpc::Channel>& channel,
                      const Events& events, int64_t n, int batch_size) {
  client::PublisherOptions options;
  options.max_buffered = kStreamWindow;
  options.batch_size = batch_size;
  options.deadline = kScenarioTimeout;
  client::Publisher publisher(channel, options);
  // The Publisher bounds the stream itself; the Flight window only needs to
  // be larger so that PublishAsync is what blocks.
  Measurement m = Timed(n, 2 * kStreamWindow, [&](int64_t i, Flight& flight) {
    publisher.PublishAsync(
        events.Request(i),
        [&flight](absl::StatusOr<client::PublishResult> result) {
          flight.End(result.status());
        });
  });
  absl::Status closed = publisher.Close();
  if (!closed.ok() && m.error.empty()) {
    m.error = absl::StrCat("Publisher::Close: ", closed.ToString());
  }
  return m;
}

// Scenario 3: unary Publish with kUnaryConcurrency calls in flight.
// With `answer_from_thread`, the floor finishes each call from a thread of
// its own, as the sidecar finishes it from librdkafka's delivery-report
// thread (FloorService::kAnswerFromThread).
Measurement RunUnary(const std::shared_ptr<grpc::Channel>& channel,
                     const Events& events, int64_t n, bool answer_from_thread = false) {
  std::unique_ptr<v1::EventBus::Stub> stub = v1::EventBus::NewStub(channel);
  struct Call {
    grpc::ClientContext context;
    v1::PublishRequest request;
    v1::PublishResponse response;
  };
  return Timed(n, kUnaryConcurrency, [&](int64_t i, Flight& flight) {
    auto* call = new Call;
    call->request = events.Request(i);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    if (answer_from_thread) call->context.AddMetadata(FloorService::kAnswerFromThread, "1");
    stub->async()->Publish(
        &call->context, &call->request, &call->response,
        [call, &flight](grpc::Status status) {
          absl::Status outcome =
              status.ok() ? absl::OkStatus()
                          : absl::Status(static_cast<absl::StatusCode>(
                                             status.error_code()),
                                         status.error_message());
          delete call;
          flight.End(outcome);
        });
  });
}

// --- Subscribe throughput from a pre-filled topic --------------------------
//
// Both consumers join a new group that starts from the earliest offset and
// read until `total` messages arrived. The rate is taken from the first
// message to the last, so the group join (the same for both) is left out.

// The librdkafka consumer settings both subscribe scenarios share: the ones
// the sidecar's GroupConsumer sets, so the ratio shows what the sidecar and
// gRPC add, not different fetch sizes.
std::map<std::string, std::string> ConsumerProperties(const std::string& brokers,
                                                      const std::string& group) {
  return {{"bootstrap.servers", brokers},
          {"client.id", "eventbus-bench-consumer"},
          {"group.id", group},
          {"auto.offset.reset", "earliest"},
          {"enable.auto.commit", "true"},
          {"auto.commit.interval.ms", "1000"},
          {"enable.auto.offset.store", "false"},
          {"partition.assignment.strategy", "cooperative-sticky"},
          {"enable.partition.eof", "false"},
          {"queued.max.messages.kbytes", "8192"},
          {"fetch.queue.backoff.ms", "10"},
          {"fetch.max.bytes", "8388608"}};
}

// A plain librdkafka group consumer, as an application would write it:
// subscribe, poll, store the offset of every processed message, auto-commit,
// commit once more at the end, close.
// A plain librdkafka consumer in a new group (`group_prefix` + random),
// subscribed to `topic`.
absl::StatusOr<kafka::RdKafkaPtr> SubscribedConsumer(const std::string& brokers,
                                                     const std::string& group_prefix,
                                                     const std::string& topic) {
  absl::StatusOr<kafka::RdKafkaConfPtr> conf = kafka::MakeRdKafkaConf(
      ConsumerProperties(brokers, absl::StrCat(group_prefix, RandomSuffix())));
  if (!conf.ok()) return conf.status();
  char errstr[512];
  kafka::RdKafkaPtr rk(
      rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), errstr, sizeof(errstr)));
  if (rk == nullptr) return absl::InternalError(errstr);
  conf->release();
  rd_kafka_poll_set_consumer(rk.get());
  kafka::RdKafkaTopicPartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(),
                                    RD_KAFKA_PARTITION_UA);
  if (rd_kafka_resp_err_t err = rd_kafka_subscribe(rk.get(), topics.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat("subscribe: ", rd_kafka_err2str(err)));
  }
  return rk;
}

Measurement RunConsumeDirect(const std::string& brokers, const std::string& topic,
                             int64_t total) {
  Measurement m;
  absl::StatusOr<kafka::RdKafkaPtr> consumer =
      SubscribedConsumer(brokers, "bench-direct-", topic);
  if (!consumer.ok()) return Measurement{.error = consumer.status().ToString()};
  kafka::RdKafkaPtr rk = *std::move(consumer);
  const absl::Time deadline = absl::Now() + kScenarioTimeout;
  absl::Time first, last;
  int64_t got = 0;
  while (got < total && absl::Now() < deadline) {
    kafka::RdKafkaMessagePtr msg(rd_kafka_consumer_poll(rk.get(), 100));
    if (msg == nullptr) continue;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m.error.empty()) m.error = rd_kafka_message_errstr(msg.get());
      ++m.failed;
      continue;
    }
    // "Processing", the least a CloudEvents consumer does: read the event's
    // attributes (its ce_ headers, which the sidecar decodes too) and touch
    // the value; then mark it done.
    size_t attribute_bytes = 0;
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(msg.get(), &headers) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value,
                                                 &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        attribute_bytes += size;
      }
    }
    volatile size_t sink = msg->len + attribute_bytes;
    (void)sink;
    rd_kafka_offset_store(msg->rkt, msg->partition, msg->offset);
    if (++got == 1) first = absl::Now();
  }
  last = absl::Now();
  if (got < total) {
    m.error = absl::StrCat("timed out after ", got, " of ", total, " messages");
  }
  rd_kafka_commit(rk.get(), nullptr, /*async=*/0);
  rd_kafka_consumer_close(rk.get());
  m.events = got;
  m.elapsed = last - first;
  return m;
}

// Subscribe through the sidecar with client::Subscriber, auto-ack (every
// delivery the handler returns OK for is acked).
Measurement RunSubscribeSidecar(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& topic, int64_t total) {
  client::SubscriberOptions options;
  options.topics = {topic};
  options.group = absl::StrCat("bench-sidecar-", RandomSuffix());
  options.start = v1::START_POSITION_EARLIEST;
  options.auto_ack = true;
  client::Subscriber subscriber(channel, options);

  absl::Mutex mu;
  int64_t got = 0;       // first deliveries
  int64_t repeated = 0;  // redeliveries (not counted)
  absl::Time first, last, previous;
  // Pauses between deliveries: where the time goes when the rate is low.
  absl::Duration longest_gap, long_gap_total;
  int64_t long_gaps = 0;
  absl::Status run_status;
  std::thread runner([&] {
    run_status = subscriber.Run([&](const v1::Delivery& delivery) {
      absl::MutexLock lock(&mu);
      if (delivery.attempt() > 1) {
        ++repeated;
        return absl::OkStatus();
      }
      volatile size_t sink = delivery.event().data().size();
      (void)sink;
      const absl::Time now = absl::Now();
      if (got > 0) {
        const absl::Duration gap = now - previous;
        longest_gap = std::max(longest_gap, gap);
        if (gap >= absl::Milliseconds(100)) {
          ++long_gaps;
          long_gap_total += gap;
        }
      }
      previous = now;
      if (++got == 1) first = now;
      if (got == total) {
        last = absl::Now();
        subscriber.Stop();
      }
      return absl::OkStatus();
    });
    absl::MutexLock lock(&mu);
    if (got < total && last == absl::Time()) last = absl::InfiniteFuture();
  });
  Measurement m;
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return got >= total || last == absl::InfiniteFuture();
    };
    if (!mu.AwaitWithTimeout(absl::Condition(&done), kScenarioTimeout)) {
      m.error = absl::StrCat("timed out after ", got, " of ", total, " messages");
    }
  }
  subscriber.Stop();
  runner.join();
  absl::MutexLock lock(&mu);
  m.events = got;
  if (got >= total) {
    m.elapsed = last - first;
  } else if (m.error.empty()) {
    m.error = absl::StrCat("stream ended after ", got, " of ", total,
                           " messages: ", run_status.ToString());
  }
  if (!run_status.ok() && m.error.empty()) {
    m.error = absl::StrCat("Subscriber::Run: ", run_status.ToString());
  }
  m.longest_pause_ms = absl::ToDoubleMilliseconds(longest_gap);
  m.long_pauses = long_gaps;
  std::fprintf(stderr,
               "bench: sidecar subscribe %s: longest pause between deliveries "
               "%.1f ms; %lld pauses >= 100 ms, %.1f ms in all\n",
               topic.c_str(), absl::ToDoubleMilliseconds(longest_gap),
               static_cast<long long>(long_gaps),
               absl::ToDoubleMilliseconds(long_gap_total));
  if (repeated > 0 && m.error.empty()) {
    // Redelivery means an ack got lost or late: worth knowing, not a failure.
    std::fprintf(stderr, "bench: %lld redeliveries in sidecar subscribe\n",
                 static_cast<long long>(repeated));
  }
  return m;
}

// --- Publish-ack latency at a fixed offered rate (open loop) ---------------
//
// Event i is sent at start + i / rate whether or not earlier events have
// completed, and its latency is counted from that scheduled time to its
// acknowledgement: a sender held up by a stall (a full buffer, a blocked
// call) shows as latency instead of hiding it.

using SteadyClock = std::chrono::steady_clock;

// CPU seconds (user + system) of this process so far.
double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double ChildCpuSeconds(const ChildServer& child) {
  std::optional<ProcessUsage> u = child.Usage();
  return u ? u->cpu_seconds : -1;
}

// CPU time of this process (the application), of a server process and of
// the broker between Start and Stop, and the wall time between them. A
// process that is not given, or whose /proc cannot be read, reads -1.
class CpuMeter {
 public:
  CpuMeter(const ChildServer* server, pid_t broker_pid)
      : server_(server), broker_pid_(broker_pid) {}

  void Start() {
    start_ = SteadyClock::now();
    app_ = SelfCpuSeconds();
    server_cpu_ = ServerCpu();
    broker_cpu_ = BrokerCpu();
  }
  void Stop() {
    wall_seconds_ =
        std::chrono::duration<double>(SteadyClock::now() - start_).count();
    app_ = SelfCpuSeconds() - app_;
    server_cpu_ = Delta(server_cpu_, ServerCpu());
    broker_cpu_ = Delta(broker_cpu_, BrokerCpu());
  }

  double wall_seconds() const { return wall_seconds_; }
  double app_cpu_seconds() const { return app_; }
  double server_cpu_seconds() const { return server_cpu_; }
  double broker_cpu_seconds() const { return broker_cpu_; }

 private:
  static double Delta(double before, double after) {
    return before >= 0 && after >= 0 ? after - before : -1;
  }
  double ServerCpu() const {
    return server_ == nullptr ? -1 : ChildCpuSeconds(*server_);
  }
  double BrokerCpu() const {
    if (broker_pid_ <= 0) return -1;
    std::optional<ProcessUsage> u = ReadUsage(broker_pid_);
    return u ? u->cpu_seconds : -1;
  }

  const ChildServer* const server_;
  const pid_t broker_pid_;
  SteadyClock::time_point start_;
  double wall_seconds_ = 0;
  double app_ = 0;
  double server_cpu_ = -1;
  double broker_cpu_ = -1;
};

struct LatencyMeasurement {
  Histogram histogram;  // nanoseconds, scheduled send to acknowledgement
  int64_t sent = 0;
  int64_t failed = 0;
  std::string error;
};

// Collects completions from producer or gRPC threads.
class LatencyRecorder {
 public:
  void Done(SteadyClock::time_point scheduled, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           SteadyClock::now() - scheduled)
                           .count();
    absl::MutexLock lock(&mu_);
    ++done_;
    if (status.ok()) {
      histogram_.Record(ns);
    } else {
      ++failed_;
      if (first_error_.empty()) first_error_ = status.ToString();
    }
  }

  bool WaitDone(int64_t n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto all = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  }

  // Moves the results into `m`; call after WaitDone succeeded.
  void Into(LatencyMeasurement& m) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    m.histogram = histogram_;
    m.failed = failed_;
    if (!first_error_.empty() && m.error.empty()) {
      m.error = absl::StrCat(failed_, " events failed, first: ", first_error_);
    }
  }

 private:
  absl::Mutex mu_;
  Histogram histogram_ ABSL_GUARDED_BY(mu_);
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// Calls `send(i, scheduled_time)` for i = 0.. at `rate` per second for
// `duration`, sleeping until each scheduled time (never waiting for
// completions), then waits until `recorder` has every completion (each
// event must end with recorder.Done exactly once, from any thread).
// `meter`, when given, measures from just before the first send until the
// last completion.
template <typename SendFn>
LatencyMeasurement OpenLoopInto(LatencyRecorder& recorder, double rate,
                                absl::Duration duration, SendFn send,
                                CpuMeter* meter = nullptr) {
  LatencyMeasurement m;
  const int64_t count = std::max<int64_t>(
      1, static_cast<int64_t>(rate * absl::ToDoubleSeconds(duration)));
  const auto period = std::chrono::duration<double, std::nano>(1e9 / rate);
  const SteadyClock::time_point start =
      SteadyClock::now() + std::chrono::milliseconds(5);
  if (meter != nullptr) meter->Start();
  for (int64_t i = 0; i < count; ++i) {
    const auto scheduled =
        start + std::chrono::duration_cast<SteadyClock::duration>(period * i);
    std::this_thread::sleep_until(scheduled);
    send(i, scheduled);
  }
  m.sent = count;
  if (!recorder.WaitDone(count, absl::Seconds(60))) {
    m.error = "not every event completed within 60 s of the last send";
    return m;
  }
  if (meter != nullptr) meter->Stop();
  recorder.Into(m);
  return m;
}

// OpenLoopInto with a recorder of its own: `send(i, scheduled, recorder)`.
template <typename SendFn>
LatencyMeasurement OpenLoop(double rate, absl::Duration duration, SendFn send,
                            CpuMeter* meter = nullptr) {
  auto recorder = std::make_unique<LatencyRecorder>();
  LatencyMeasurement m = OpenLoopInto(
      *recorder, rate, duration,
      [&](int64_t i, SteadyClock::time_point scheduled) {
        send(i, scheduled, *recorder);
      },
      meter);
  if (!m.error.empty()) recorder.release();  // late completions still write into it
  return m;
}

LatencyMeasurement LatencyDirect(kafka::RdKafkaProducer& producer,
                                 const Events& events, double rate,
                                 absl::Duration duration,
                                 CpuMeter* meter = nullptr) {
  absl::StatusOr<kafka::Record> record = events.Record(0);
  if (!record.ok()) return LatencyMeasurement{.error = record.status().ToString()};
  return OpenLoop(rate, duration,
                  [&](int64_t i, SteadyClock::time_point scheduled,
                      LatencyRecorder& recorder) {
                    kafka::Record r = *record;
                    r.key = absl::StrCat("key-", i % kKeys);
                    for (kafka::Header& h : r.headers) {
                      if (h.name == "ce_id") h.value = absl::StrCat("lat-", i);
                    }
                    absl::Status accepted = producer.Produce(
                        std::move(r), absl::Now() + absl::Seconds(60),
                        [&recorder, scheduled](kafka::DeliveryResult result) {
                          recorder.Done(scheduled, result.status);
                        });
                    if (!accepted.ok()) recorder.Done(scheduled, accepted);
                  },
                  meter);
}

// PublishStream through client::Publisher, 1 event per message.
LatencyMeasurement LatencyStream(const std::shared_ptr<grpc::Channel>& channel,
                                 const Events& events, double rate,
                                 absl::Duration duration,
                                 CpuMeter* meter = nullptr) {
  client::PublisherOptions options;
  options.max_buffered = kStreamWindow;
  options.batch_size = 1;
  options.deadline = absl::Seconds(60);
  client::Publisher publisher(channel, options);
  // Open the stream and warm it up; not measured.
  for (int64_t i = 0; i < kWarmupEvents; ++i) {
    publisher.PublishAsync(events.Request(i),
                           [](absl::StatusOr<client::PublishResult>) {});
  }
  if (absl::Status flushed = publisher.Flush(absl::Seconds(30)); !flushed.ok()) {
    return LatencyMeasurement{.error = absl::StrCat("warm-up: ", flushed.ToString())};
  }
  LatencyMeasurement m = OpenLoop(
      rate, duration,
      [&](int64_t i, SteadyClock::time_point scheduled, LatencyRecorder& recorder) {
        publisher.PublishAsync(
            events.Request(kWarmupEvents + i),
            [&recorder, scheduled](absl::StatusOr<client::PublishResult> result) {
              recorder.Done(scheduled, result.status());
            });
      },
      meter);
  absl::Status closed = publisher.Close();
  if (!closed.ok() && m.error.empty()) {
    m.error = absl::StrCat("Publisher::Close: ", closed.ToString());
  }
  return m;
}

// Unary Publish (callback API) at a fixed rate with `concurrency` calls in
// flight at most, as a load tool such as ghz runs it (`--rps R -c 16`): a
// send waits for a free slot, its latency still counted from its scheduled
// time.
LatencyMeasurement LatencyUnary(const std::shared_ptr<grpc::Channel>& channel,
                                const Events& events, double rate,
                                absl::Duration duration, int concurrency,
                                CpuMeter* meter = nullptr) {
  std::unique_ptr<v1::EventBus::Stub> stub = v1::EventBus::NewStub(channel);
  struct Call {
    grpc::ClientContext context;
    v1::PublishRequest request;
    v1::PublishResponse response;
  };
  // Warm-up: the channel connected, the server's threads awake.
  for (int64_t i = 0; i < kWarmupEvents; ++i) {
    grpc::ClientContext context;
    v1::PublishResponse response;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    if (grpc::Status status = stub->Publish(&context, events.Request(i), &response);
        !status.ok()) {
      return LatencyMeasurement{
          .error = absl::StrCat("warm-up: ", status.error_message())};
    }
  }
  auto slots = std::make_unique<Flight>(concurrency);
  const absl::Time deadline =
      absl::Now() + duration + absl::Seconds(60);
  LatencyMeasurement m = OpenLoop(
      rate, duration,
      [&](int64_t i, SteadyClock::time_point scheduled, LatencyRecorder& recorder) {
        if (!slots->Begin(deadline)) {
          recorder.Done(scheduled, absl::DeadlineExceededError("no free slot"));
          return;
        }
        auto* call = new Call;
        call->request = events.Request(kWarmupEvents + i);
        call->context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        stub->async()->Publish(
            &call->context, &call->request, &call->response,
            [call, flight = slots.get(), &recorder, scheduled](grpc::Status status) {
              absl::Status outcome =
                  status.ok() ? absl::OkStatus()
                              : absl::Status(static_cast<absl::StatusCode>(
                                                 status.error_code()),
                                             status.error_message());
              delete call;
              flight->End(outcome);
              recorder.Done(scheduled, outcome);
            });
      },
      meter);
  if (!m.error.empty()) slots.release();  // late completions still use it
  return m;
}

// One latency scenario at one rate, merged over the runs.
struct LatencyRow {
  std::string scenario;
  double rate = 0;
  size_t payload = 0;
  Histogram histogram;
  int64_t sent = 0;
  int64_t failed = 0;
  std::vector<std::string> errors;
  int runs = 0;

  void Add(const LatencyMeasurement& m) {
    histogram.Merge(m.histogram);
    sent += m.sent;
    failed += m.failed;
    if (!m.error.empty()) errors.push_back(m.error);
    ++runs;
  }
  bool Ok() const {
    return runs > 0 && errors.empty() && failed == 0 && histogram.count() == sent;
  }
  double Ms(double q) const {
    return static_cast<double>(histogram.Percentile(q)) / 1e6;
  }
};

// --- End-to-end latency: publish to delivery --------------------------------
//
// Each event's data starts with its scheduled send time (steady clock,
// nanoseconds, 8 bytes little-endian; this process both sends and
// receives); a consumer in a new group reads the topic from the earliest
// offset and records receive time - scheduled time. Before the timed part,
// warm-up events (time 0) are sent until the consumer has one, so that the
// group join is not measured.

std::string StampedData(int64_t scheduled_ns, size_t payload) {
  std::string data(std::max<size_t>(payload, 8), 'x');
  for (int i = 0; i < 8; ++i) {
    data[i] = static_cast<char>((static_cast<uint64_t>(scheduled_ns) >> (8 * i)) & 0xff);
  }
  return data;
}

int64_t ReadStamp(const void* data, size_t size) {
  if (size < 8) return -1;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<const unsigned char*>(data)[i]) << (8 * i);
  }
  return static_cast<int64_t>(v);
}

// The stamp of an event scheduled at `t` (never 0, which marks warm-up).
int64_t StampOf(SteadyClock::time_point t) {
  return std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch())
             .count());
}

// Receives stamped events on another thread; the sender waits on it.
class StampSink {
 public:
  explicit StampSink(LatencyRecorder* recorder) : recorder_(recorder) {}
  void Received(int64_t stamp) {
    if (stamp == 0) {
      warm_.store(true);
      return;
    }
    if (stamp < 0) return;
    recorder_->Done(SteadyClock::time_point(std::chrono::nanoseconds(stamp)),
                    absl::OkStatus());
  }
  bool warm() const { return warm_.load(); }

 private:
  LatencyRecorder* const recorder_;
  std::atomic<bool> warm_{false};
};

// Sends warm-up events with `send_warmup()` every 50 ms until `sink` saw one.
template <typename WarmupFn>
bool WarmUp(const StampSink& sink, WarmupFn send_warmup) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!sink.warm()) {
    if (absl::Now() > deadline) return false;
    send_warmup();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// Direct: the librdkafka producer and a plain librdkafka group consumer.
LatencyMeasurement EndToEndDirect(const std::string& brokers,
                                  kafka::RdKafkaProducer& producer,
                                  const std::string& topic, size_t payload,
                                  double rate, absl::Duration duration) {
  auto recorder = std::make_shared<LatencyRecorder>();
  StampSink sink(recorder.get());
  absl::StatusOr<kafka::RdKafkaPtr> subscribed =
      SubscribedConsumer(brokers, "bench-e2e-", topic);
  if (!subscribed.ok()) return LatencyMeasurement{.error = subscribed.status().ToString()};
  kafka::RdKafkaPtr rk = *std::move(subscribed);
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    while (!stop.load()) {
      kafka::RdKafkaMessagePtr msg(rd_kafka_consumer_poll(rk.get(), 50));
      if (msg == nullptr || msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      sink.Received(ReadStamp(msg->payload, msg->len));
      rd_kafka_offset_store(msg->rkt, msg->partition, msg->offset);
    }
  });
  kafka::Record base;
  if (absl::StatusOr<kafka::Record> r = Events(topic, payload).Record(0); r.ok()) {
    base = *std::move(r);
  }
  auto produce = [&](int64_t i, int64_t stamp) {
    kafka::Record r = base;
    r.key = absl::StrCat("key-", i % kKeys);
    r.value = StampedData(stamp, payload);
    absl::Status accepted = producer.Produce(
        std::move(r), absl::Now() + absl::Seconds(60),
        [recorder, stamp](kafka::DeliveryResult result) {
          if (!result.status.ok() && stamp != 0) {
            recorder->Done(SteadyClock::now(), result.status);
          }
        });
    if (!accepted.ok() && stamp != 0) recorder->Done(SteadyClock::now(), accepted);
  };
  LatencyMeasurement m;
  if (!WarmUp(sink, [&] { produce(0, 0); })) {
    m.error = "the consumer received nothing within 60 s";
  } else {
    m = OpenLoopInto(*recorder, rate, duration,
                     [&](int64_t i, SteadyClock::time_point scheduled) {
                       produce(i, StampOf(scheduled));
                     });
  }
  stop.store(true);
  consumer.join();
  rd_kafka_consumer_close(rk.get());
  return m;
}

// Through the sidecar: PublishStream with 1 event per message, and
// Subscribe (client::Subscriber, auto-ack) in a new group.
LatencyMeasurement EndToEndSidecar(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& topic, size_t payload,
                                   double rate, absl::Duration duration) {
  auto recorder = std::make_shared<LatencyRecorder>();
  StampSink sink(recorder.get());
  client::SubscriberOptions sub_options;
  sub_options.topics = {topic};
  sub_options.group = absl::StrCat("bench-e2e-", RandomSuffix());
  sub_options.start = v1::START_POSITION_EARLIEST;
  sub_options.auto_ack = true;
  client::Subscriber subscriber(channel, sub_options);
  absl::Status run_status;
  std::thread runner([&] {
    run_status = subscriber.Run([&](const v1::Delivery& d) {
      if (d.attempt() == 1) {
        sink.Received(ReadStamp(d.event().data().data(), d.event().data().size()));
      }
      return absl::OkStatus();
    });
  });
  client::PublisherOptions options;
  options.max_buffered = kStreamWindow;
  options.batch_size = 1;
  options.deadline = absl::Seconds(60);
  client::Publisher publisher(channel, options);
  const Events events(topic, payload);
  auto publish = [&](int64_t i, int64_t stamp) {
    v1::PublishRequest request = events.Request(i);
    request.mutable_event()->set_data(StampedData(stamp, payload));
    publisher.PublishAsync(
        std::move(request),
        [recorder, stamp](absl::StatusOr<client::PublishResult> result) {
          if (!result.ok() && stamp != 0) {
            recorder->Done(SteadyClock::now(), result.status());
          }
        });
  };
  LatencyMeasurement m;
  if (!WarmUp(sink, [&] { publish(0, 0); })) {
    m.error = "the subscriber received nothing within 60 s";
  } else {
    m = OpenLoopInto(*recorder, rate, duration,
                     [&](int64_t i, SteadyClock::time_point scheduled) {
                       publish(i, StampOf(scheduled));
                     });
  }
  absl::Status closed = publisher.Close();
  subscriber.Stop();
  runner.join();
  if (!closed.ok() && m.error.empty()) {
    m.error = absl::StrCat("Publisher::Close: ", closed.ToString());
  }
  return m;
}

// --- Sidecar resources -------------------------------------------------------

// Samples a process's VmRSS every 100 ms on a thread of its own; Max() is
// the largest sample.
class RssSampler {
 public:
  explicit RssSampler(const ChildServer* child) : child_(child) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        if (std::optional<ProcessUsage> u = child_->Usage()) {
          max_kb_.store(std::max(max_kb_.load(), u->rss_kb));
        }
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
  }
  ~RssSampler() { Stop(); }
  int64_t Stop() {
    if (thread_.joinable()) {
      stop_.store(true);
      thread_.join();
    }
    return max_kb_.load();
  }

 private:
  const ChildServer* const child_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> max_kb_{-1};
  std::thread thread_;
};

struct ResourceRow {
  std::string what;
  double value = -1;
  std::string unit;
  std::string target;  // as text, or empty
  double limit = -1;   // value must be <= limit to meet the target
  std::string error;
};


// The median of `v` (of the middle two for an even count); -1 when empty.
double Median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// One fixed-rate scenario at one rate over the runs: the CPU each process
// spent per second (mCPU: 1,000 = one core busy) and the latency.
struct RateRow {
  struct Run {
    int64_t events = 0;
    double wall_seconds = 0;
    double app_cpu_seconds = -1;
    double server_cpu_seconds = -1;
    double broker_cpu_seconds = -1;
  };
  std::string scenario;
  double rate = 0;
  std::vector<Run> runs;
  Histogram histogram;
  int64_t sent = 0;
  int64_t failed = 0;
  std::vector<std::string> errors;

  void Add(const LatencyMeasurement& m, const CpuMeter& meter) {
    histogram.Merge(m.histogram);
    sent += m.sent;
    failed += m.failed;
    if (!m.error.empty()) {
      errors.push_back(m.error);
      return;
    }
    runs.push_back({.events = m.sent,
                    .wall_seconds = meter.wall_seconds(),
                    .app_cpu_seconds = meter.app_cpu_seconds(),
                    .server_cpu_seconds = meter.server_cpu_seconds(),
                    .broker_cpu_seconds = meter.broker_cpu_seconds()});
  }
  // The median over the runs of one process's CPU: in mCPU, or in
  // microseconds per event; -1 when not measured.
  double MilliCpu(double Run::*process) const {
    return Median(process, [](const Run& r, double cpu) {
      return r.wall_seconds > 0 ? cpu * 1000 / r.wall_seconds : -1;
    });
  }
  double MicrosPerEvent(double Run::*process) const {
    return Median(process, [](const Run& r, double cpu) {
      return r.events > 0 ? cpu * 1e6 / static_cast<double>(r.events) : -1;
    });
  }
  bool Ok() const { return errors.empty() && failed == 0 && !runs.empty(); }
  double Ms(double q) const {
    return static_cast<double>(histogram.Percentile(q)) / 1e6;
  }

 private:
  template <typename Fn>
  double Median(double Run::*process, Fn per) const {
    std::vector<double> v;
    for (const Run& r : runs) {
      if (r.*process < 0) continue;
      if (const double x = per(r, r.*process); x >= 0) v.push_back(x);
    }
    return bench::Median(std::move(v));
  }
};

// Results of one scenario and payload over every run.
struct Row {
  std::string scenario;
  size_t payload = 0;
  std::string baseline_direct;  // scenario to compare with, or empty
  std::string baseline_floor;
  std::vector<Measurement> runs;

  // The median of the runs' events/s (of the middle two for an even count).
  double MedianEventsPerSecond() const {
    if (runs.empty()) return 0;
    std::vector<double> rates;
    for (const Measurement& m : runs) rates.push_back(m.EventsPerSecond());
    return Median(std::move(rates));
  }
  // The median of the runs' CPU ms per 1,000 events of one process
  // (Measurement::app_cpu_seconds, server_ or broker_), or -1.
  double MedianCpuMs(double Measurement::*process) const {
    std::vector<double> v;
    for (const Measurement& m : runs) {
      const double ms = m.PerThousand(m.*process);
      if (ms >= 0) v.push_back(ms);
    }
    return Median(std::move(v));
  }
  double MedianMegabytesPerSecond() const {
    return MedianEventsPerSecond() * static_cast<double>(payload) / 1e6;
  }
  bool Ok() const {
    if (runs.empty()) return false;
    for (const Measurement& m : runs) {
      if (!m.error.empty() || m.failed > 0 || m.EventsPerSecond() <= 0) {
        return false;
      }
    }
    return true;
  }
};

class Report {
 public:
  Row& Get(const std::string& scenario, size_t payload,
           const std::string& direct = "", const std::string& floor = "") {
    for (Row& row : rows_) {
      if (row.scenario == scenario && row.payload == payload) return row;
    }
    Row& row = rows_.emplace_back();
    row.scenario = scenario;
    row.payload = payload;
    row.baseline_direct = direct;
    row.baseline_floor = floor;
    return row;
  }

  // Forgets the throughput rows without a run (the scenarios --scenario
  // left out).
  void DropRowsWithoutRuns() {
    std::erase_if(rows_, [](const Row& row) { return row.runs.empty(); });
  }

  const Row* Find(const std::string& scenario, size_t payload) const {
    for (const Row& row : rows_) {
      if (row.scenario == scenario && row.payload == payload) return &row;
    }
    return nullptr;
  }

  std::optional<double> Ratio(const Row& row, const std::string& baseline) const {
    if (baseline.empty()) return std::nullopt;
    const Row* base = Find(baseline, row.payload);
    if (base == nullptr || base->MedianEventsPerSecond() <= 0) return std::nullopt;
    return row.MedianEventsPerSecond() / base->MedianEventsPerSecond();
  }

  LatencyRow& Latency(const std::string& scenario, double rate, size_t payload) {
    LatencyRow& row = RowAt(latency_, scenario, rate);
    row.payload = payload;
    return row;
  }

  void AddResource(ResourceRow row) { resources_.push_back(std::move(row)); }

  RateRow& Rate(const std::string& scenario, double rate) {
    return RowAt(rates_, scenario, rate);
  }

  const RateRow* FindRate(const std::string& scenario, double rate) const {
    for (const RateRow& row : rates_) {
      if (row.scenario == scenario && row.rate == rate) return &row;
    }
    return nullptr;
  }

  // CPU at fixed rates: one line per scenario and rate, then the targets
  // at 1,000 events/s.
  std::string RatesTable() const {
    if (rates_.empty()) return "";
    auto tenths = [](double v) {
      return v >= 0 ? absl::StrFormat("%.1f", v) : std::string("-");
    };
    auto whole = [](double v) {
      return v >= 0 ? absl::StrFormat("%.0f", v) : std::string("-");
    };
    std::string out = absl::StrFormat(
        "%-34s %7s %7s %9s %9s %10s %9s %11s %8s %8s  %s\n", "scenario", "rate/s",
        "events", "srv mCPU", "app mCPU", "kafka mCPU", "srv us/ev",
        "kafka us/ev", "p50 ms", "p99 ms", "");
    for (const RateRow& row : rates_) {
      absl::StrAppend(
          &out,
          absl::StrFormat("%-34s %7.0f %7d %9s %9s %10s %9s %11s %8.3f %8.3f  %s\n",
                          row.scenario, row.rate, row.sent,
                          tenths(row.MilliCpu(&RateRow::Run::server_cpu_seconds)),
                          tenths(row.MilliCpu(&RateRow::Run::app_cpu_seconds)),
                          tenths(row.MilliCpu(&RateRow::Run::broker_cpu_seconds)),
                          whole(row.MicrosPerEvent(&RateRow::Run::server_cpu_seconds)),
                          whole(row.MicrosPerEvent(&RateRow::Run::broker_cpu_seconds)),
                          row.Ms(0.5), row.Ms(0.99), row.Ok() ? "" : "FAILED"));
    }
    return out;
  }

  // Sidecar memory and CPU, each with its target when it has one.
  std::string ResourcesTable() const {
    if (resources_.empty()) return "";
    std::string out = absl::StrFormat("%-58s %10s %-6s %-10s %s\n", "measure",
                                      "value", "", "target", "");
    for (const ResourceRow& r : resources_) {
      std::string verdict;
      if (!r.error.empty()) {
        verdict = absl::StrCat("FAILED: ", r.error);
      } else if (r.limit >= 0) {
        verdict = r.value <= r.limit ? "met" : "NOT met";
      }
      absl::StrAppend(&out, absl::StrFormat("%-58s %10.1f %-6s %-10s %s\n", r.what,
                                            r.value, r.unit, r.target, verdict));
    }
    return out;
  }

  bool AllOk() const {
    for (const ResourceRow& r : resources_) {
      if (!r.error.empty()) return false;
    }
    if (rows_.empty() && latency_.empty() && resources_.empty() && rates_.empty()) {
      return false;
    }
    for (const Row& row : rows_) {
      if (!row.Ok()) return false;
    }
    for (const LatencyRow& row : latency_) {
      if (!row.Ok()) return false;
    }
    for (const RateRow& row : rates_) {
      if (!row.Ok()) return false;
    }
    return true;
  }

  // Publish-ack latency: one line per scenario and rate, then the sidecar's
  // added latency (sidecar - direct) per rate.
  std::string LatencyTable() const {
    if (latency_.empty()) return "";
    std::string out = absl::StrFormat(
        "%-26s %8s %8s %9s %9s %9s %9s  %s\n", "latency scenario", "rate/s",
        "events", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "");
    for (const LatencyRow& row : latency_) {
      absl::StrAppend(
          &out, absl::StrFormat("%-26s %8.0f %8d %9.3f %9.3f %9.3f %9.3f  %s\n",
                                row.scenario, row.rate, row.sent, row.Ms(0.5),
                                row.Ms(0.99), row.Ms(0.999),
                                static_cast<double>(row.histogram.max()) / 1e6,
                                row.Ok() ? "" : "FAILED"));
    }
    for (const auto& [rate, direct, sidecar] : LatencyPairs()) {
      const bool e2e = direct->scenario == kE2eDirect;
      absl::StrAppend(
          &out, absl::StrFormat("%-26s %8.0f %8s %+9.3f %+9.3f %+9.3f %9s\n",
                                e2e ? "added end-to-end" : "added publish-ack",
                                rate, "",
                                sidecar->Ms(0.5) - direct->Ms(0.5),
                                sidecar->Ms(0.99) - direct->Ms(0.99),
                                sidecar->Ms(0.999) - direct->Ms(0.999), ""));
    }
    return out;
  }

  std::string Table() const {
    std::string out = absl::StrFormat(
        "%-27s %8s %12s %9s %10s %10s %8s %8s %9s  %s\n", "scenario", "payload",
        "events/s", "MB/s", "vs direct", "vs floor", "app cpu", "srv cpu",
        "kafka cpu", "runs (events/s)");
    auto cpu = [](double ms) {
      return ms >= 0 ? absl::StrFormat("%.1f", ms) : std::string("-");
    };
    for (const Row& row : rows_) {
      auto ratio = [&](const std::string& base) {
        std::optional<double> r = Ratio(row, base);
        return r ? absl::StrFormat("%.2f", *r) : std::string("-");
      };
      std::string runs;
      for (const Measurement& m : row.runs) {
        absl::StrAppend(&runs, runs.empty() ? "" : " ",
                        absl::StrFormat("%.0f", m.EventsPerSecond()),
                        m.error.empty() ? "" : "!");
      }
      absl::StrAppend(
          &out, absl::StrFormat("%-27s %8s %12.0f %9.2f %10s %10s %8s %8s %9s  %s\n",
                                row.scenario, PayloadName(row.payload),
                                row.MedianEventsPerSecond(),
                                row.MedianMegabytesPerSecond(),
                                ratio(row.baseline_direct),
                                ratio(row.baseline_floor),
                                cpu(row.MedianCpuMs(&Measurement::app_cpu_seconds)),
                                cpu(row.MedianCpuMs(&Measurement::server_cpu_seconds)),
                                cpu(row.MedianCpuMs(&Measurement::broker_cpu_seconds)),
                                runs));
    }
    return out;
  }

  std::string Json(const Options& options) const {
    std::string out = "{\n";
    absl::StrAppend(&out, "  \"brokers\": ", Quote(options.brokers), ",\n",
                    "  \"events_per_run_100b\": ", options.events, ",\n",
                    "  \"runs\": ", options.runs, ",\n",
                    "  \"partitions\": ", kPartitions, ",\n",
                    "  \"ok\": ", AllOk() ? "true" : "false", ",\n",
                    "  \"results\": [\n");
    for (size_t r = 0; r < rows_.size(); ++r) {
      const Row& row = rows_[r];
      auto ratio = [&](const std::string& base) {
        std::optional<double> v = Ratio(row, base);
        return v ? absl::StrFormat("%.4f", *v) : std::string("null");
      };
      auto json_ms = [](double ms) {
        return ms >= 0 ? absl::StrFormat("%.3f", ms) : std::string("null");
      };
      absl::StrAppend(
          &out, "    {\"scenario\": ", Quote(row.scenario),
          ", \"payload_bytes\": ", row.payload,
          ", \"events_per_second\": ", absl::StrFormat("%.1f", row.MedianEventsPerSecond()),
          ", \"mb_per_second\": ", absl::StrFormat("%.3f", row.MedianMegabytesPerSecond()),
          ", \"ratio_vs_direct\": ", ratio(row.baseline_direct),
          ", \"ratio_vs_floor\": ", ratio(row.baseline_floor),
          ", \"app_cpu_ms_per_1000_events\": ",
          json_ms(row.MedianCpuMs(&Measurement::app_cpu_seconds)),
          ", \"server_cpu_ms_per_1000_events\": ",
          json_ms(row.MedianCpuMs(&Measurement::server_cpu_seconds)),
          ", \"broker_cpu_ms_per_1000_events\": ",
          json_ms(row.MedianCpuMs(&Measurement::broker_cpu_seconds)),
          ", \"ok\": ", row.Ok() ? "true" : "false", ", \"runs\": [");
      for (size_t i = 0; i < row.runs.size(); ++i) {
        const Measurement& m = row.runs[i];
        absl::StrAppend(&out, i == 0 ? "" : ", ", "{\"events\": ", m.events,
                        ", \"seconds\": ",
                        absl::StrFormat("%.4f", absl::ToDoubleSeconds(m.elapsed)),
                        ", \"events_per_second\": ",
                        absl::StrFormat("%.1f", m.EventsPerSecond()),
                        ", \"failed\": ", m.failed,
                        m.long_pauses < 0
                            ? std::string()
                            : absl::StrFormat(", \"longest_pause_ms\": %.1f, "
                                              "\"pauses_over_100ms\": %d",
                                              m.longest_pause_ms, m.long_pauses),
                        ", \"error\": ", Quote(m.error), "}");
      }
      absl::StrAppend(&out, "]}", r + 1 < rows_.size() ? "," : "", "\n");
    }
    absl::StrAppend(&out, "  ],\n  \"latency\": [\n");
    for (size_t r = 0; r < latency_.size(); ++r) {
      const LatencyRow& row = latency_[r];
      absl::StrAppend(
          &out, "    {\"scenario\": ", Quote(row.scenario),
          ", \"offered_events_per_second\": ", absl::StrFormat("%.0f", row.rate),
          ", \"payload_bytes\": ", row.payload, ", \"runs\": ", row.runs,
          ", \"events\": ", row.sent, ", \"failed\": ", row.failed,
          absl::StrFormat(", \"p50_ms\": %.4f, \"p99_ms\": %.4f, "
                          "\"p999_ms\": %.4f, \"max_ms\": %.4f",
                          row.Ms(0.5), row.Ms(0.99), row.Ms(0.999),
                          static_cast<double>(row.histogram.max()) / 1e6),
          ", \"ok\": ", row.Ok() ? "true" : "false", ", \"errors\": [");
      for (size_t i = 0; i < row.errors.size(); ++i) {
        absl::StrAppend(&out, i == 0 ? "" : ", ", Quote(row.errors[i]));
      }
      absl::StrAppend(&out, "]}", r + 1 < latency_.size() ? "," : "", "\n");
    }
    absl::StrAppend(&out, "  ],\n  \"latency_added\": [\n");
    const auto pairs = LatencyPairs();
    for (size_t r = 0; r < pairs.size(); ++r) {
      const auto& [rate, direct, sidecar] = pairs[r];
      absl::StrAppend(
          &out,
          absl::StrFormat("    {\"kind\": \"%s\", \"offered_events_per_second\": %.0f, "
                          "\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f}",
                          direct->scenario == kE2eDirect ? "end-to-end" : "publish-ack",
                          rate, sidecar->Ms(0.5) - direct->Ms(0.5),
                          sidecar->Ms(0.99) - direct->Ms(0.99),
                          sidecar->Ms(0.999) - direct->Ms(0.999)),
          r + 1 < pairs.size() ? "," : "", "\n");
    }
    absl::StrAppend(&out, "  ],\n  \"fixed_rates\": [\n");
    for (size_t r = 0; r < rates_.size(); ++r) {
      const RateRow& row = rates_[r];
      auto json_num = [](double v) {
        return v >= 0 ? absl::StrFormat("%.3f", v) : std::string("null");
      };
      absl::StrAppend(
          &out, "    {\"scenario\": ", Quote(row.scenario),
          ", \"offered_events_per_second\": ", absl::StrFormat("%.0f", row.rate),
          ", \"events\": ", row.sent, ", \"failed\": ", row.failed,
          ", \"server_mcpu\": ", json_num(row.MilliCpu(&RateRow::Run::server_cpu_seconds)),
          ", \"app_mcpu\": ", json_num(row.MilliCpu(&RateRow::Run::app_cpu_seconds)),
          ", \"broker_mcpu\": ", json_num(row.MilliCpu(&RateRow::Run::broker_cpu_seconds)),
          ", \"server_cpu_us_per_event\": ",
          json_num(row.MicrosPerEvent(&RateRow::Run::server_cpu_seconds)),
          ", \"broker_cpu_us_per_event\": ",
          json_num(row.MicrosPerEvent(&RateRow::Run::broker_cpu_seconds)),
          absl::StrFormat(", \"p50_ms\": %.4f, \"p99_ms\": %.4f", row.Ms(0.5),
                          row.Ms(0.99)),
          ", \"ok\": ", row.Ok() ? "true" : "false", ", \"errors\": [");
      for (size_t i = 0; i < row.errors.size(); ++i) {
        absl::StrAppend(&out, i == 0 ? "" : ", ", Quote(row.errors[i]));
      }
      absl::StrAppend(&out, "]}", r + 1 < rates_.size() ? "," : "", "\n");
    }
    absl::StrAppend(&out, "  ],\n  \"sidecar_resources\": [\n");
    for (size_t r = 0; r < resources_.size(); ++r) {
      const ResourceRow& row = resources_[r];
      absl::StrAppend(&out, "    {\"measure\": ", Quote(row.what),
                      absl::StrFormat(", \"value\": %.3f", row.value),
                      ", \"unit\": ", Quote(row.unit),
                      ", \"target\": ", Quote(row.target),
                      ", \"error\": ", Quote(row.error), "}",
                      r + 1 < resources_.size() ? "," : "", "\n");
    }
    absl::StrAppend(&out, "  ]\n}\n");
    return out;
  }

  static std::string PayloadName(size_t payload) {
    return payload % 1024 == 0 ? absl::StrCat(payload / 1024, " KiB")
                               : absl::StrCat(payload, " B");
  }

 private:
  // The row of `rows` (latency or fixed-rate) for `scenario` at `rate`,
  // added when there is none yet.
  template <typename R>
  static R& RowAt(std::vector<R>& rows, const std::string& scenario, double rate) {
    for (R& row : rows) {
      if (row.scenario == scenario && row.rate == rate) return row;
    }
    R& row = rows.emplace_back();
    row.scenario = scenario;
    row.rate = rate;
    return row;
  }

  static std::string Quote(const std::string& s) {
    std::string out;
    AppendJsonString(s, &out);
    return out;
  }

  // (rate, direct row, sidecar row) for every rate that has both.
  std::vector<std::tuple<double, const LatencyRow*, const LatencyRow*>>
  LatencyPairs() const {
    std::vector<std::tuple<double, const LatencyRow*, const LatencyRow*>> out;
    for (const auto& [direct, sidecar] : kLatencyPairs) {
      for (const LatencyRow& d : latency_) {
        if (d.scenario != direct) continue;
        for (const LatencyRow& x : latency_) {
          if (x.scenario == sidecar && x.rate == d.rate) {
            out.emplace_back(d.rate, &d, &x);
          }
        }
      }
    }
    return out;
  }

  std::vector<Row> rows_;
  std::vector<LatencyRow> latency_;
  std::vector<RateRow> rates_;
  std::vector<ResourceRow> resources_;
};

// Kibibytes from /proc as megabytes (10^6 bytes, the unit of the targets).
double Megabytes(int64_t kb) { return static_cast<double>(kb) * 1024 / 1e6; }


// The targets read from the rates group at 1,000 events/s.
std::string RateTargets(const Report& report) {
  const double rate = 1000;
  const RateRow* unary = report.FindRate(kRateUnary, rate);
  const RateRow* direct = report.FindRate(kRateDirect, rate);
  const RateRow* defaults = report.FindRate(kRateDirectDefaults, rate);
  if (unary == nullptr || direct == nullptr) return "";
  using Run = RateRow::Run;
  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  std::string out;
  const double sidecar = unary->MilliCpu(&Run::server_cpu_seconds);
  absl::StrAppend(&out, absl::StrFormat(
      "unary at 1,000/s: sidecar %.1f mCPU (target <= 100: %s)\n", sidecar,
      verdict(sidecar >= 0 && sidecar <= 100)));
  const double broker = unary->MilliCpu(&Run::broker_cpu_seconds);
  const double broker_direct = direct->MilliCpu(&Run::broker_cpu_seconds);
  if (broker >= 0 && broker_direct > 0) {
    absl::StrAppend(&out, absl::StrFormat(
        "unary at 1,000/s: broker %.1f mCPU, %.2f x direct with the sidecar's "
        "settings (%.1f mCPU; target <= 1.2: %s)",
        broker, broker / broker_direct, broker_direct,
        verdict(broker / broker_direct <= 1.2)));
    if (defaults != nullptr) {
      const double broker_defaults = defaults->MilliCpu(&Run::broker_cpu_seconds);
      if (broker_defaults > 0) {
        absl::StrAppend(&out, absl::StrFormat(
            ", %.2f x direct with librdkafka's defaults (%.1f mCPU)",
            broker / broker_defaults, broker_defaults));
      }
    }
    absl::StrAppend(&out, "\n");
  }
  const double added = unary->Ms(0.99) - direct->Ms(0.99);
  absl::StrAppend(&out, absl::StrFormat(
      "unary at 1,000/s: publish-ack p99 added (sidecar - direct) %+.3f ms "
      "(target <= 0.5: %s)\n",
      added, verdict(added <= 0.5)));
  return out;
}

void Usage() {
  std::fprintf(stderr,
               "usage: eventbus-bench [--brokers HOST:PORT] [--events N] "
               "[--runs R] [--smoke] [--json PATH] [--only G] [--sidecar PATH] "
               "[--broker-pid PID] [--scenario NAME] [--floor PATH]\n"
               "  --brokers  Kafka bootstrap (default: $TEST_KAFKA_BROKERS)\n"
               "  --events   events per run and scenario with 100 B data "
               "(default 200000; 1 KiB runs use N/4)\n"
               "  --runs     runs of every scenario (default 2)\n"
               "  --smoke    2000 events, 1 run, short latency and resource "
               "phases: checks that everything works\n"
               "  --json     also write the results to PATH\n"
               "  --only G   run only group G: publish, subscribe, latency, "
               "rates or resources (repeatable; default all)\n"
               "  --sidecar  the eventbus-sidecar binary (default: the one "
               "built with this benchmark)\n"
               "  --broker-pid  the Kafka broker's process: report its CPU "
               "per scenario (deploy/bench.sh passes it)\n"
               "  --scenario  run only this publish scenario, e.g. \"sidecar "
               "stream b100\" (repeatable; for profiling)\n"
               "  --floor    the program started as `PATH --serve-floor ADDRESS` "
               "for the gRPC floor (default: this benchmark; for profiling)\n");
}

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options options;
  if (const char* env = std::getenv("TEST_KAFKA_BROKERS")) options.brokers = env;
  bool events_set = false, runs_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    std::optional<std::string> v;
    if (arg == "--smoke") {
      options.smoke = true;
    } else if (arg == "--brokers" && (v = value())) {
      options.brokers = *v;
    } else if (arg == "--events" && (v = value()) &&
               absl::SimpleAtoi(*v, &options.events) && options.events > 0) {
      events_set = true;
    } else if (arg == "--runs" && (v = value()) &&
               absl::SimpleAtoi(*v, &options.runs) && options.runs > 0) {
      runs_set = true;
    } else if (arg == "--only" && (v = value()) &&
               (*v == "publish" || *v == "subscribe" || *v == "latency" ||
                *v == "rates" || *v == "resources")) {
      options.only.push_back(*v);
    } else if (arg == "--scenario" && (v = value())) {
      options.scenarios.push_back(*v);
    } else if (arg == "--json" && (v = value())) {
      options.json_path = *v;
    } else if (arg == "--sidecar" && (v = value())) {
      options.sidecar_binary = *v;
    } else if (arg == "--floor" && (v = value())) {
      options.floor_program = *v;
    } else if (arg == "--broker-pid" && (v = value()) &&
               absl::SimpleAtoi(*v, &options.broker_pid) && options.broker_pid > 0 &&
               ReadUsage(options.broker_pid)) {
      // A process whose CPU time can be read.
    } else {
      std::fprintf(stderr, "eventbus-bench: bad argument '%s'\n", arg.c_str());
      return std::nullopt;
    }
  }
  if (options.smoke) {
    if (!events_set) options.events = 2000;
    if (!runs_set) options.runs = 1;
  }
  if (options.brokers.empty()) {
    std::fprintf(stderr,
                 "eventbus-bench: no Kafka: pass --brokers or set "
                 "TEST_KAFKA_BROKERS\n");
    return std::nullopt;
  }
  return options;
}

void Progress(const std::string& scenario, size_t payload, int run,
              const Measurement& m) {
  std::fprintf(stderr, "bench: run %d %-27s %-6s %10.0f events/s%s%s\n", run,
               scenario.c_str(), Report::PayloadName(payload).c_str(),
               m.EventsPerSecond(), m.error.empty() ? "" : "  FAILED: ",
               m.error.c_str());
}

// `eventbus-bench --serve-floor ADDRESS`: the gRPC floor server, run by the
// benchmark as a process of its own. Serves until SIGTERM or SIGINT.
int ServeFloor(const std::string& address) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  grpc::EnableDefaultHealthCheckService(true);
  FloorService service(kSource, kType);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "eventbus-bench: floor server cannot listen on %s\n",
                 address.c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

// Starts an eventbus-sidecar process on a free loopback port.
absl::StatusOr<std::unique_ptr<ChildServer>> StartSidecar(
    const Options& options, const std::string& name) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  const std::string address = absl::StrCat("127.0.0.1:", *port);
  return ChildServer::Start(
      name, options.sidecar_binary,
      {absl::StrCat("--kafka.brokers=", options.brokers),
       "--kafka.client_id=eventbus-bench", absl::StrCat("--server.listen=", address),
       "--server.metrics_listen=127.0.0.1:0",
       absl::StrCat("--events.source=", kSource), "--log.level=warn"},
      address, absl::Seconds(60));
}

absl::StatusOr<std::unique_ptr<ChildServer>> StartFloor(const Options& options) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  const std::string address = absl::StrCat("127.0.0.1:", *port);
  return ChildServer::Start("floor", options.floor_program, {"--serve-floor", address},
                            address, absl::Seconds(30));
}

// Memory and CPU of a fresh sidecar process: idle, then 10,000 events/s of
// 1 KiB published (PublishStream, 1 event per message), then the same rate
// published and subscribed at once.
void MeasureResources(const Options& options, kafka::RdKafkaProducer& direct,
                      const std::string& prefix, Report& report) {
  const absl::Duration phase = options.smoke ? absl::Seconds(1) : absl::Seconds(5);
  const double rate = 10000;
  const size_t payload = 1024;
  auto fail = [&](const std::string& what, const std::string& error) {
    report.AddResource({.what = what, .error = error});
  };
  absl::StatusOr<std::unique_ptr<ChildServer>> sidecar =
      StartSidecar(options, "sidecar-resources");
  if (!sidecar.ok()) return fail("sidecar start", sidecar.status().ToString());
  ChildServer& child = **sidecar;
  // Idle: started, connected to Kafka, nothing asked of it yet.
  absl::SleepFor(absl::Seconds(2));
  std::optional<ProcessUsage> idle = child.Usage();
  if (!idle) return fail("RSS idle", "cannot read /proc");
  report.AddResource({.what = "RSS idle (started, connected to Kafka)",
                      .value = Megabytes(idle->rss_kb),
                      .unit = "MB",
                      .target = "<= 20 MB",
                      .limit = 20});
  report.AddResource({.what = "  of which anonymous (not shared library pages)",
                      .value = Megabytes(idle->anon_rss_kb),
                      .unit = "MB"});

  const std::string topic = absl::StrCat(prefix, "-resources");
  if (absl::Status created = CreateTopic(options.brokers, topic, kPartitions);
      !created.ok()) {
    return fail("topic", created.ToString());
  }
  const std::shared_ptr<grpc::Channel> channel =
      client::CreateChannel(child.address());
  const std::string rate_text = absl::StrFormat("%.0f events/s", rate);

  // Phase 1: publish only.
  {
    RssSampler sampler(&child);
    const double cpu_before = ChildCpuSeconds(child);
    LatencyMeasurement m =
        LatencyStream(channel, Events(topic, payload), rate, phase);
    const double cpu = ChildCpuSeconds(child) - cpu_before;
    const int64_t max_kb = sampler.Stop();
    const std::string what =
        absl::StrCat("RSS peak, publishing ", rate_text, " of 1 KiB");
    if (!m.error.empty()) return fail(what, m.error);
    report.AddResource({.what = what, .value = Megabytes(max_kb), .unit = "MB",
                        .target = "<= 64 MB", .limit = 64});
    report.AddResource(
        {.what = "CPU per 1,000 events published (1 KiB, 10,000/s)",
         .value = cpu * 1e6 / static_cast<double>(m.sent + kWarmupEvents),
         .unit = "ms",
         .target = "<= 50 ms",
         .limit = 50});
  }
  // For comparison: the same rate through the direct producer, this
  // process's CPU (librdkafka linked into the application).
  {
    const double cpu_before = SelfCpuSeconds();
    LatencyMeasurement m = LatencyDirect(direct, Events(topic, payload), rate, phase);
    const double cpu = SelfCpuSeconds() - cpu_before;
    const std::string what =
        "  direct producer, same rate: CPU of the application process";
    if (!m.error.empty()) return fail(what, m.error);
    report.AddResource({.what = what,
                        .value = cpu * 1e6 / static_cast<double>(m.sent),
                        .unit = "ms"});
  }
  // And the gRPC floor at the same rate: what gRPC alone costs a server
  // process per 1,000 messages of 1 KiB arriving one by one.
  {
    absl::StatusOr<std::unique_ptr<ChildServer>> floor = StartFloor(options);
    const std::string what = "  gRPC floor, same rate: CPU of the floor process";
    if (!floor.ok()) return fail(what, floor.status().ToString());
    const double cpu_before = ChildCpuSeconds(**floor);
    LatencyMeasurement m = LatencyStream(client::CreateChannel((*floor)->address()),
                                         Events(topic, payload), rate, phase);
    const double cpu = ChildCpuSeconds(**floor) - cpu_before;
    if (!m.error.empty()) return fail(what, m.error);
    report.AddResource({.what = what,
                        .value = cpu * 1e6 / static_cast<double>(m.sent + kWarmupEvents),
                        .unit = "ms"});
  }
  // Phase 2: publish and subscribe at once (every event goes in and out).
  {
    RssSampler sampler(&child);
    const double cpu_before = ChildCpuSeconds(child);
    LatencyMeasurement m = EndToEndSidecar(channel, absl::StrCat(topic, "-e2e"),
                                           payload, rate, phase);
    const double cpu = ChildCpuSeconds(child) - cpu_before;
    const int64_t max_kb = sampler.Stop();
    const std::string what = absl::StrCat("RSS peak, publishing and subscribing ",
                                          rate_text, " of 1 KiB");
    if (!m.error.empty()) return fail(what, m.error);
    report.AddResource({.what = what, .value = Megabytes(max_kb), .unit = "MB",
                        .target = "<= 64 MB", .limit = 64});
    report.AddResource(
        {.what = "CPU per 1,000 events published and delivered (1 KiB)",
         .value = cpu * 1e6 / static_cast<double>(m.sent),
         .unit = "ms"});
  }
  const int code = child.Stop();
  if (code != 0) fail("sidecar exit", absl::StrCat("exit code ", code));
}

int Main(int argc, char** argv) {
  // As the sidecar's main does (see there).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc == 3 && std::string(argv[1]) == "--serve-floor") {
    return ServeFloor(argv[2]);
  }
  std::optional<Options> parsed = ParseArgs(argc, argv);
  if (!parsed) {
    Usage();
    return 2;
  }
  const Options options = *parsed;
  spdlog::set_level(spdlog::level::warn);

  server::Config config;
  config.brokers = options.brokers;
  config.client_id = "eventbus-bench";
  const std::map<std::string, std::string> properties =
      server::ProducerProperties(config);

  std::fprintf(stderr, "bench: Kafka %s; producer settings (direct and sidecar):",
               options.brokers.c_str());
  for (const auto& [name, value] : properties) {
    std::fprintf(stderr, " %s=%s", name.c_str(), value.c_str());
  }
  std::fprintf(stderr, "\n");

  const std::vector<size_t> payloads = {100, 1024};
  std::map<size_t, Events> events;
  const std::string prefix = absl::StrCat("bench-", RandomSuffix());
  auto create = [&](const std::string& topic) {
    absl::Status created = CreateTopic(options.brokers, topic, kPartitions);
    if (!created.ok()) {
      std::fprintf(stderr, "bench: cannot create topic %s: %s\n", topic.c_str(),
                   created.ToString().c_str());
    }
    return created.ok();
  };
  // What a plain client sends (Events::Kind::kPlain), to the same topics.
  std::map<size_t, Events> plain_events;
  for (size_t payload : payloads) {
    const std::string topic = absl::StrCat(prefix, "-", payload);
    if (!create(topic)) return 1;
    events.emplace(payload, Events(topic, payload));
    plain_events.emplace(payload, Events(topic, payload, Events::Kind::kPlain));
  }
  // Subscribe scenarios read these, filled by the direct producer first.
  std::map<size_t, Events> sub_events;
  if (options.Wants("subscribe")) {
    for (size_t payload : payloads) {
      const std::string topic = absl::StrCat(prefix, "-sub-", payload);
      if (!create(topic)) return 1;
      sub_events.emplace(payload, Events(topic, payload));
    }
  }

  kafka::ProducerOptions producer_options;
  producer_options.properties = properties;
  producer_options.max_waiting_bytes = static_cast<size_t>(config.max_buffered_bytes);
  absl::StatusOr<std::unique_ptr<kafka::RdKafkaProducer>> direct =
      kafka::RdKafkaProducer::Create(producer_options);
  if (!direct.ok()) {
    std::fprintf(stderr, "bench: direct producer: %s\n",
                 direct.status().ToString().c_str());
    return 1;
  }
  if (!WaitConnected(**direct, absl::Seconds(30))) {
    std::fprintf(stderr, "bench: Kafka at %s does not answer\n",
                 options.brokers.c_str());
    return 1;
  }
  Report report;
  // The sidecar of the throughput and latency scenarios, and the floor.
  std::unique_ptr<ChildServer> sidecar, floor;
  if (options.Wants("publish") || options.Wants("subscribe") ||
      options.Wants("latency") || options.Wants("rates")) {
    absl::StatusOr<std::unique_ptr<ChildServer>> started =
        StartSidecar(options, "sidecar");
    if (!started.ok()) {
      std::fprintf(stderr, "bench: %s\n", started.status().ToString().c_str());
      return 1;
    }
    sidecar = *std::move(started);
  }
  if (options.Wants("publish") || options.Wants("subscribe") ||
      options.Wants("rates")) {
    absl::StatusOr<std::unique_ptr<ChildServer>> started = StartFloor(options);
    if (!started.ok()) {
      std::fprintf(stderr, "bench: %s\n", started.status().ToString().c_str());
      return 1;
    }
    floor = *std::move(started);
  }
  const std::shared_ptr<grpc::Channel> sidecar_channel =
      sidecar ? client::CreateChannel(sidecar->address()) : nullptr;
  const std::shared_ptr<grpc::Channel> floor_channel =
      floor ? client::CreateChannel(floor->address()) : nullptr;

  for (size_t payload : payloads) {
    if (!options.Wants("publish")) break;
    report.Get("direct", payload);
    report.Get("sidecar stream b100", payload, "direct", "floor stream b100");
    report.Get("sidecar stream b1", payload, "direct", "floor stream b1");
    report.Get("direct c64", payload);
    report.Get("sidecar unary c64", payload, "direct c64", "floor unary c64");
    report.Get("sidecar plain b100", payload, "direct", "floor plain b100");
  }
  for (size_t payload : payloads) {
    if (!options.Wants("publish")) break;
    report.Get("floor stream b100", payload);
    report.Get("floor stream b1", payload);
    report.Get("floor unary c64", payload);
    // Its ratio to the plain floor: what finishing calls from a thread that
    // is not gRPC's costs, as the sidecar must (see RunUnary).
    report.Get("floor unary c64 from thread", payload, "", "floor unary c64");
    report.Get("floor plain b100", payload);
  }

  // CPU of this process (the application), of the server process (none
  // for direct scenarios) and of the broker.
  auto timed = [&](const ChildServer* server, auto run) {
    CpuMeter meter(server, options.broker_pid);
    meter.Start();
    Measurement m = run();
    meter.Stop();
    m.app_cpu_seconds = meter.app_cpu_seconds();
    m.server_cpu_seconds = meter.server_cpu_seconds();
    m.broker_cpu_seconds = meter.broker_cpu_seconds();
    return m;
  };
  const ChildServer* const no_server = nullptr;  // direct scenarios

  for (int run = 1; run <= options.runs && options.Wants("publish"); ++run) {
    for (size_t payload : payloads) {
      const Events& ev = events.at(payload);
      const int64_t n =
          payload >= 1024 ? std::max<int64_t>(1, options.events / 4) : options.events;
      // Runs `scenario` unless --scenario names others.
      auto record = [&](const std::string& scenario, auto measure) {
        if (!options.WantsScenario(scenario)) return;
        Measurement m = measure();
        Progress(scenario, payload, run, m);
        report.Get(scenario, payload).runs.push_back(std::move(m));
      };
      auto run_direct = [&] {
        return timed(no_server, [&] { return RunDirect(**direct, ev, n); });
      };
      auto on = [&](const ChildServer* server, auto scenario) {
        return [&, server, scenario] { return timed(server, scenario); };
      };
      // Direct and sidecar alternate, so a slow phase of the broker hits both.
      record("direct", run_direct);
      record("sidecar stream b100", on(sidecar.get(), [&] {
               return RunStream(sidecar_channel, ev, n, 100);
             }));
      record("direct", run_direct);
      record("sidecar stream b1", on(sidecar.get(), [&] {
               return RunStream(sidecar_channel, ev, n, 1);
             }));
      record("direct", run_direct);
      record("direct c64", on(no_server, [&] {
               return RunDirect(**direct, ev, n, kUnaryConcurrency);
             }));
      record("sidecar unary c64", on(sidecar.get(), [&] {
               return RunUnary(sidecar_channel, ev, n);
             }));
      record("floor stream b100", on(floor.get(), [&] {
               return RunStream(floor_channel, ev, n, 100);
             }));
      record("floor stream b1", on(floor.get(), [&] {
               return RunStream(floor_channel, ev, n, 1);
             }));
      record("floor unary c64", on(floor.get(), [&] {
               return RunUnary(floor_channel, ev, n);
             }));
      record("floor unary c64 from thread", on(floor.get(), [&] {
               return RunUnary(floor_channel, ev, n, /*answer_from_thread=*/true);
             }));
      const Events& plain = plain_events.at(payload);
      record("sidecar plain b100", on(sidecar.get(), [&] {
               return RunStream(sidecar_channel, plain, n, 100);
             }));
      record("floor plain b100", on(floor.get(), [&] {
               return RunStream(floor_channel, plain, n, 100);
             }));
    }
  }

  // Subscribe throughput: fill each topic once, then every run reads all of
  // it in new groups, direct and through the sidecar in turn.
  auto events_for = [&](size_t payload) {
    return payload >= 1024 ? std::max<int64_t>(1, options.events / 4)
                           : options.events;
  };
  std::map<size_t, int64_t> sub_totals;
  for (size_t payload : payloads) {
    if (!options.Wants("subscribe")) break;
    report.Get("consume direct", payload);
    report.Get("sidecar subscribe", payload, "consume direct", "floor subscribe");
    // RunDirect writes a warm-up before the timed events.
    Measurement fill = RunDirect(**direct, sub_events.at(payload), events_for(payload));
    std::fprintf(stderr, "bench: filled %s with %lld events (%.0f events/s)%s%s\n",
                 sub_events.at(payload).topic().c_str(),
                 static_cast<long long>(events_for(payload) + kWarmupEvents),
                 fill.EventsPerSecond(), fill.error.empty() ? "" : "  FAILED: ",
                 fill.error.c_str());
    if (!fill.error.empty()) {
      report.Get("consume direct", payload).runs.push_back(fill);
      continue;
    }
    sub_totals[payload] = events_for(payload) + kWarmupEvents;
  }
  for (int run = 1; run <= options.runs && options.Wants("subscribe"); ++run) {
    // Not a structured binding: clang before 16 cannot capture one in the
    // lambdas below.
    for (const auto& entry : sub_totals) {
      const size_t payload = entry.first;
      const int64_t total = entry.second;
      const std::string& topic = sub_events.at(payload).topic();
      auto record = [&](const std::string& scenario, Measurement m) {
        Progress(scenario, payload, run, m);
        report.Get(scenario, payload).runs.push_back(std::move(m));
      };
      record("consume direct", timed(no_server, [&] {
               return RunConsumeDirect(options.brokers, topic, total);
             }));
      record("sidecar subscribe", timed(sidecar.get(), [&] {
               return RunSubscribeSidecar(sidecar_channel, topic, total);
             }));
      record("floor subscribe", timed(floor.get(), [&] {
               return RunSubscribeSidecar(floor_channel, topic, total);
             }));
    }
  }
  for (const auto& [payload, total] : sub_totals) report.Get("floor subscribe", payload);

  // Latency, open loop, 100 B events: publish-ack and end-to-end, direct
  // and sidecar in turn at each rate, histograms merged over the runs.
  if (options.Wants("latency")) {
    const std::vector<double> rates =
        options.smoke ? std::vector<double>{1000} : std::vector<double>{1000, 10000};
    const absl::Duration duration =
        options.smoke ? absl::Milliseconds(500) : absl::Seconds(3);
    const Events& ev = events.at(100);
    int topics = 0;
    for (int run = 1; run <= options.runs; ++run) {
      for (double rate : rates) {
        auto record = [&](const char* scenario, LatencyMeasurement m) {
          LatencyRow& row = report.Latency(scenario, rate, ev.payload());
          std::fprintf(stderr,
                       "bench: run %d latency %-24s @%6.0f/s p50 %.3f ms p99 %.3f "
                       "ms p99.9 %.3f ms%s%s\n",
                       run, scenario, rate, m.histogram.Percentile(0.5) / 1e6,
                       m.histogram.Percentile(0.99) / 1e6,
                       m.histogram.Percentile(0.999) / 1e6,
                       m.error.empty() ? "" : "  FAILED: ", m.error.c_str());
          row.Add(m);
        };
        record(kAckDirect, LatencyDirect(**direct, ev, rate, duration));
        record(kAckSidecar, LatencyStream(sidecar_channel, ev, rate, duration));
        const std::string t1 = absl::StrCat(prefix, "-e2e-", ++topics);
        const std::string t2 = absl::StrCat(prefix, "-e2e-", ++topics);
        if (!create(t1) || !create(t2)) return 1;
        record(kE2eDirect, EndToEndDirect(options.brokers, **direct, t1,
                                          ev.payload(), rate, duration));
        record(kE2eSidecar, EndToEndSidecar(sidecar_channel, t2, ev.payload(),
                                            rate, duration));
      }
    }
  }

  // CPU at fixed rates, 100 B events: the shape most services have. Each
  // scenario at each rate in turn, direct first; CPU from the first send
  // to the last acknowledgement.
  if (options.Wants("rates")) {
    const std::vector<double> rates = options.smoke
                                          ? std::vector<double>{1000}
                                          : std::vector<double>{100, 1000, 10000};
    const absl::Duration duration =
        options.smoke ? absl::Seconds(1) : absl::Seconds(5);
    const Events& ev = events.at(100);
    // What an application that links librdkafka gets without tuning: the
    // idempotent producer (acks=all) and every other setting librdkafka's.
    kafka::ProducerOptions defaults_options;
    defaults_options.properties = {{"bootstrap.servers", options.brokers},
                                   {"client.id", "eventbus-bench-defaults"},
                                   {"enable.idempotence", "true"}};
    absl::StatusOr<std::unique_ptr<kafka::RdKafkaProducer>> defaults =
        kafka::RdKafkaProducer::Create(defaults_options);
    if (!defaults.ok() || !WaitConnected(**defaults, absl::Seconds(30))) {
      std::fprintf(stderr, "bench: the producer with librdkafka's defaults did "
                           "not connect\n");
      return 1;
    }
    // Warm-up, not measured: both producers know the topic's leaders.
    for (kafka::RdKafkaProducer* producer : {direct->get(), defaults->get()}) {
      if (LatencyMeasurement m =
              LatencyDirect(*producer, ev, 1000, absl::Milliseconds(100));
          !m.error.empty()) {
        std::fprintf(stderr, "bench: rates warm-up: %s\n", m.error.c_str());
        return 1;
      }
    }
    for (int run = 1; run <= options.runs; ++run) {
      for (double rate : rates) {
        auto measure = [&](const char* scenario, const ChildServer* server,
                           auto fn) {
          CpuMeter meter(server, options.broker_pid);
          LatencyMeasurement m = fn(&meter);
          RateRow& row = report.Rate(scenario, rate);
          row.Add(m, meter);
          auto milli = [&](double cpu) {
            return cpu >= 0 && meter.wall_seconds() > 0
                       ? absl::StrFormat("%.1f", cpu * 1000 / meter.wall_seconds())
                       : std::string("-");
          };
          std::fprintf(stderr,
                       "bench: run %d rate %-30s @%6.0f/s server %s, app %s, "
                       "broker %s mCPU, p99 %.3f ms%s%s\n",
                       run, scenario, rate,
                       milli(meter.server_cpu_seconds()).c_str(),
                       milli(meter.app_cpu_seconds()).c_str(),
                       milli(meter.broker_cpu_seconds()).c_str(),
                       m.histogram.Percentile(0.99) / 1e6,
                       m.error.empty() ? "" : "  FAILED: ", m.error.c_str());
        };
        measure(kRateDirect, nullptr, [&](CpuMeter* meter) {
          return LatencyDirect(**direct, ev, rate, duration, meter);
        });
        measure(kRateDirectDefaults, nullptr, [&](CpuMeter* meter) {
          return LatencyDirect(**defaults, ev, rate, duration, meter);
        });
        measure(kRateUnary, sidecar.get(), [&](CpuMeter* meter) {
          return LatencyUnary(sidecar_channel, ev, rate, duration,
                              kRateConcurrency, meter);
        });
        measure(kRateStream, sidecar.get(), [&](CpuMeter* meter) {
          return LatencyStream(sidecar_channel, ev, rate, duration, meter);
        });
        measure(kRateFloorUnary, floor.get(), [&](CpuMeter* meter) {
          return LatencyUnary(floor_channel, ev, rate, duration,
                              kRateConcurrency, meter);
        });
        measure(kRateFloorStream, floor.get(), [&](CpuMeter* meter) {
          return LatencyStream(floor_channel, ev, rate, duration, meter);
        });
      }
    }
    (*defaults)->Shutdown(absl::Seconds(10)).IgnoreError();
  }

  std::optional<ProcessUsage> sidecar_usage =
      sidecar ? sidecar->Usage() : std::nullopt;
  const int sidecar_exit = sidecar ? sidecar->Stop() : 0;
  const int floor_exit = floor ? floor->Stop() : 0;
  if (sidecar_usage) {
    report.AddResource({.what = "RSS peak (VmHWM) over the throughput and latency runs",
                        .value = Megabytes(sidecar_usage->peak_rss_kb),
                        .unit = "MB"});
  }
  if (options.Wants("resources")) {
    MeasureResources(options, **direct, prefix, report);
  }
  absl::Status direct_down = (*direct)->Shutdown(absl::Seconds(30));
  if (!options.scenarios.empty()) report.DropRowsWithoutRuns();

  if (options.Wants("publish") || options.Wants("subscribe")) {
    std::printf("\neventbus-bench: throughput, %d partitions, %d run(s); "
                "median of the runs (publish: direct runs between the sidecar "
                "scenarios, 3 per run; subscribe: a new group per run, rate "
                "from first to last message); MB/s counts event data only; "
                "app cpu / srv cpu / kafka cpu: CPU ms per 1,000 events of the "
                "application process (librdkafka for direct, the gRPC "
                "client otherwise), of the server process (sidecar or "
                "floor) and of the broker (with --broker-pid)\n\n%s\n",
                kPartitions, options.runs, report.Table().c_str());
  }
  if (options.Wants("latency")) {
    std::printf("latency, open loop (sent on schedule, measured from the "
                "scheduled send time), 100 B events, 1 event per message, "
                "%d run(s) merged; publish-ack: until the publish is "
                "acknowledged; end-to-end: until a subscriber (new group) "
                "receives it:\n\n%s\n",
                options.runs, report.LatencyTable().c_str());
  }
  if (options.Wants("rates")) {
    std::printf("CPU at fixed rates, open loop, 100 B events, %d run(s), "
                "median; mCPU = CPU ms per second (1,000 = one core); srv: the "
                "server process (sidecar or floor), app: this process (the "
                "application: librdkafka for direct, the gRPC client "
                "otherwise), kafka: the broker; unary: %d calls in flight at "
                "most; latency from the scheduled send to the acknowledgement:"
                "\n\n%s\n%s\n",
                options.runs, kRateConcurrency, report.RatesTable().c_str(),
                RateTargets(report).c_str());
  }
  std::printf("sidecar process resources (eventbus-sidecar, a process of its "
              "own):\n\n%s\n",
              report.ResourcesTable().c_str());
  std::fflush(stdout);

  if (!options.json_path.empty()) {
    std::ofstream json(options.json_path);
    json << report.Json(options);
    if (!json) {
      std::fprintf(stderr, "bench: cannot write %s\n", options.json_path.c_str());
      return 1;
    }
  }

  bool ok = report.AllOk();
  if (sidecar_exit != 0 || floor_exit != 0 || !direct_down.ok()) {
    std::fprintf(stderr, "bench: shutdown: sidecar exit %d, floor exit %d, direct %s\n",
                 sidecar_exit, floor_exit, direct_down.ToString().c_str());
    if (sidecar && sidecar_exit != 0) {
      std::fprintf(stderr, "sidecar log:\n%s\n", sidecar->Log().c_str());
    }
    ok = false;
  }
  if (!ok) std::fprintf(stderr, "bench: FAILED: an event failed or a scenario did not run (marked ! above)\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace eventbus::bench

int main(int argc, char** argv) { return eventbus::bench::Main(argc, argv); }
