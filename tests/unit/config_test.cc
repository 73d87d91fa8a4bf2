#include "server/config.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace eventbus::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;

class ConfigTest : public ::testing::Test {
 protected:
  // Writes `contents` to a file in the test temp dir, named after the test.
  std::string WriteConfig(const std::string& contents,
                          const std::string& suffix = ".yaml") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string path = ::testing::TempDir() + "eventbus_config_" +
                       info->name() + "_" + std::to_string(counter_++) + suffix;
    std::ofstream out(path, std::ios::trunc);
    out << contents;
    out.close();
    EXPECT_TRUE(out) << "cannot write " << path;
    return path;
  }

  // LoadConfig that must fail; returns the status.
  absl::Status LoadError(const Args& args, const Env& env = {}) {
    absl::StatusOr<Config> config = LoadConfig(args, env);
    EXPECT_FALSE(config.ok()) << "LoadConfig unexpectedly succeeded";
    return config.status();
  }

 private:
  int counter_ = 0;
};

// The message as std::string, so that gtest prints it as text.
std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

std::string Hostname() {
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

TEST_F(ConfigTest, Defaults) {
  absl::StatusOr<Config> config = LoadConfig({}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "localhost:9092");
  EXPECT_EQ(config->client_id, "eventbus-sidecar");
  EXPECT_THAT(config->producer_properties, IsEmpty());
  EXPECT_THAT(config->consumer_properties, IsEmpty());
  EXPECT_THAT(config->listen, ElementsAre("0.0.0.0:50051"));
  EXPECT_EQ(config->shutdown_grace, absl::Seconds(10));
  EXPECT_EQ(config->source, "//eventbus/" + Hostname());
  EXPECT_THAT(config->structured_topics, IsEmpty());
  EXPECT_EQ(config->max_event_bytes, 1000000);
  EXPECT_EQ(config->stream_max_in_flight, 10000);
  EXPECT_EQ(config->max_buffered_bytes, 64 << 20);
  EXPECT_EQ(config->publish_timeout, absl::Seconds(30));
  EXPECT_EQ(config->log_level, "info");
  EXPECT_EQ(config->log_format, "text");
}

TEST_F(ConfigTest, UnrelatedEnvironmentIsIgnored) {
  absl::StatusOr<Config> config =
      LoadConfig({}, {{"PATH", "/bin"}, {"HOME", "/root"},
                      {"EVENTBUSX", "1"}, {"eventbus_kafka_brokers", "x:1"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "localhost:9092");
}

TEST_F(ConfigTest, FileNestedMaps) {
  std::string path = WriteConfig(R"(
kafka:
  brokers: k1:9092
  client_id: my-client
  producer:
    linger.ms: 5
    queue:
      buffering:
        max.messages: 100000
    enable.idempotence: true
  consumer:
    fetch: {max: {bytes: 1048576}}
server:
  listen:
    - 127.0.0.1:0
    - unix:/tmp/eb.sock
  shutdown_grace: 1m30s
events:
  source: //eventbus/test
  structured_topics: [orders, "payments.v1"]
limits:
  max_event_bytes: 2048
  stream_max_in_flight: 7
  max_buffered_bytes: 1024
  publish_timeout: 500
log:
  level: debug
  format: json
)");
  absl::StatusOr<Config> config = LoadConfig({"--config", path}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "k1:9092");
  EXPECT_EQ(config->client_id, "my-client");
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "5"),
                                   Pair("queue.buffering.max.messages",
                                        "100000"),
                                   Pair("enable.idempotence", "true")));
  EXPECT_THAT(config->consumer_properties,
              ElementsAre(Pair("fetch.max.bytes", "1048576")));
  EXPECT_THAT(config->listen, ElementsAre("127.0.0.1:0", "unix:/tmp/eb.sock"));
  EXPECT_EQ(config->shutdown_grace, absl::Seconds(90));
  EXPECT_EQ(config->source, "//eventbus/test");
  EXPECT_THAT(config->structured_topics, ElementsAre("orders", "payments.v1"));
  EXPECT_EQ(config->max_event_bytes, 2048);
  EXPECT_EQ(config->stream_max_in_flight, 7);
  EXPECT_EQ(config->max_buffered_bytes, 1024);
  EXPECT_EQ(config->publish_timeout, absl::Milliseconds(500));
  EXPECT_EQ(config->log_level, "debug");
  EXPECT_EQ(config->log_format, "json");
}

TEST_F(ConfigTest, FileDottedKeysAndCommaLists) {
  std::string path = WriteConfig(R"(
kafka.brokers: [" b1:9092 ", b2:9092]
kafka.producer.linger.ms: 7
server.listen: "127.0.0.1:1, ,unix:/tmp/x.sock,"
events:
  structured_topics: a, b
limits.publish_timeout: 2s
)");
  absl::StatusOr<Config> config = LoadConfig({"--config=" + path}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "b1:9092,b2:9092");
  EXPECT_THAT(config->producer_properties, ElementsAre(Pair("linger.ms", "7")));
  EXPECT_THAT(config->listen, ElementsAre("127.0.0.1:1", "unix:/tmp/x.sock"));
  EXPECT_THAT(config->structured_topics, ElementsAre("a", "b"));
  EXPECT_EQ(config->publish_timeout, absl::Seconds(2));
}

TEST_F(ConfigTest, EmptyFileAndEmptySectionsAreFine) {
  for (const std::string contents :
       {"", "# only a comment\n", "---\n",
        "kafka:\nserver:\n  listen: [a:1]\n"}) {
    std::string path = WriteConfig(contents);
    absl::StatusOr<Config> config = LoadConfig({"--config", path}, {});
    ASSERT_TRUE(config.ok()) << contents << ": " << config.status();
    EXPECT_EQ(config->brokers, "localhost:9092");
  }
}

TEST_F(ConfigTest, EnvironmentNamesTheFile) {
  std::string path = WriteConfig("kafka: {brokers: from-file:1}\n");
  absl::StatusOr<Config> config = LoadConfig({}, {{"EVENTBUS_CONFIG", path}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "from-file:1");
}

TEST_F(ConfigTest, FlagConfigWinsOverEnvironmentConfig) {
  std::string flag_file = WriteConfig("kafka: {brokers: flag-file:1}\n");
  std::string env_file = WriteConfig("kafka: {brokers: env-file:1}\n");
  absl::StatusOr<Config> config =
      LoadConfig({"--config", flag_file}, {{"EVENTBUS_CONFIG", env_file}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "flag-file:1");
}

TEST_F(ConfigTest, EnvironmentMapping) {
  absl::StatusOr<Config> config = LoadConfig(
      {}, {{"EVENTBUS_KAFKA_BROKERS", "e1:9092,e2:9092"},
           {"EVENTBUS_KAFKA_CLIENT_ID", "env-client"},
           {"EVENTBUS_KAFKA_PRODUCER_LINGER_MS", "5"},
           {"EVENTBUS_KAFKA_PRODUCER_QUEUE_BUFFERING_MAX_MESSAGES", "1000"},
           {"EVENTBUS_KAFKA_CONSUMER_FETCH_MAX_BYTES", "4096"},
           {"EVENTBUS_SERVER_LISTEN", " 127.0.0.1:0 , unix:/tmp/eb.sock,"},
           {"EVENTBUS_SERVER_SHUTDOWN_GRACE", "0"},
           {"EVENTBUS_EVENTS_SOURCE", "//env/source"},
           {"EVENTBUS_EVENTS_STRUCTURED_TOPICS", "t1,t2"},
           {"EVENTBUS_LIMITS_MAX_EVENT_BYTES", "100000000"},
           {"EVENTBUS_LIMITS_STREAM_MAX_IN_FLIGHT", "1"},
           {"EVENTBUS_LIMITS_MAX_BUFFERED_BYTES", "9223372036854775807"},
           {"EVENTBUS_LIMITS_PUBLISH_TIMEOUT", "250ms"},
           {"EVENTBUS_LOG_LEVEL", "warn"},
           {"EVENTBUS_LOG_FORMAT", "json"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "e1:9092,e2:9092");
  EXPECT_EQ(config->client_id, "env-client");
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "5"),
                                   Pair("queue.buffering.max.messages",
                                        "1000")));
  EXPECT_THAT(config->consumer_properties,
              ElementsAre(Pair("fetch.max.bytes", "4096")));
  EXPECT_THAT(config->listen, ElementsAre("127.0.0.1:0", "unix:/tmp/eb.sock"));
  EXPECT_EQ(config->shutdown_grace, absl::ZeroDuration());
  EXPECT_EQ(config->source, "//env/source");
  EXPECT_THAT(config->structured_topics, ElementsAre("t1", "t2"));
  EXPECT_EQ(config->max_event_bytes, 100000000);
  EXPECT_EQ(config->stream_max_in_flight, 1);
  EXPECT_EQ(config->max_buffered_bytes, INT64_MAX);
  EXPECT_EQ(config->publish_timeout, absl::Milliseconds(250));
  EXPECT_EQ(config->log_level, "warn");
  EXPECT_EQ(config->log_format, "json");
}

TEST_F(ConfigTest, KubernetesServiceVariablesAreIgnored) {
  absl::StatusOr<Config> config = LoadConfig(
      {}, {{"EVENTBUS_SERVICE_HOST", "10.0.0.1"},
           {"EVENTBUS_SERVICE_PORT", "50051"},
           {"EVENTBUS_SERVICE_PORT_GRPC", "50051"},
           {"EVENTBUS_PORT", "tcp://10.0.0.1:50051"},
           {"EVENTBUS_PORT_50051_TCP", "tcp://10.0.0.1:50051"},
           {"EVENTBUS_PORT_50051_TCP_PROTO", "tcp"},
           {"EVENTBUS_PORT_50051_TCP_PORT", "50051"},
           {"EVENTBUS_PORT_50051_TCP_ADDR", "10.0.0.1"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->listen, ElementsAre("0.0.0.0:50051"));
}

TEST_F(ConfigTest, FlagsInBothForms) {
  absl::StatusOr<Config> config = LoadConfig(
      {"--kafka.brokers=a:9092,b:9092", "--kafka.client_id", "flag-client",
       "--kafka.producer.linger.ms=5", "--kafka.consumer.group.id", "g1",
       "--server.listen=127.0.0.1:0,unix:/tmp/eb.sock",
       "--server.shutdown_grace", "2s", "--limits.max_event_bytes", "42",
       "--limits.publish_timeout=1m", "--log.level", "trace",
       "--log.format=json", "--kafka.producer.acks=all"},
      {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "a:9092,b:9092");
  EXPECT_EQ(config->client_id, "flag-client");
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "5"),
                                   Pair("acks", "all")));
  EXPECT_THAT(config->consumer_properties, ElementsAre(Pair("group.id", "g1")));
  EXPECT_THAT(config->listen, ElementsAre("127.0.0.1:0", "unix:/tmp/eb.sock"));
  EXPECT_EQ(config->shutdown_grace, absl::Seconds(2));
  EXPECT_EQ(config->max_event_bytes, 42);
  EXPECT_EQ(config->publish_timeout, absl::Minutes(1));
  EXPECT_EQ(config->log_level, "trace");
  EXPECT_EQ(config->log_format, "json");
}

TEST_F(ConfigTest, LastRepeatedFlagWins) {
  absl::StatusOr<Config> config =
      LoadConfig({"--log.level=debug", "--log.level=error"}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->log_level, "error");
}

TEST_F(ConfigTest, EmptyFlagValueClearsAList) {
  std::string path = WriteConfig("events: {structured_topics: [a, b]}\n");
  absl::StatusOr<Config> config =
      LoadConfig({"--config", path, "--events.structured_topics="}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->structured_topics, IsEmpty());
}

TEST_F(ConfigTest, PrecedenceForPlainKey) {
  std::string path = WriteConfig("kafka: {brokers: file:1}\n");
  Env env = {{"EVENTBUS_KAFKA_BROKERS", "env:1"}};
  Args flag = {"--kafka.brokers=flag:1"};
  Args file = {"--config", path};
  Args both = {"--config", path, "--kafka.brokers=flag:1"};

  auto brokers = [](const Args& a, const Env& e) {
    absl::StatusOr<Config> config = LoadConfig(a, e);
    return config.ok() ? config->brokers : config.status().ToString();
  };
  EXPECT_EQ(brokers({}, {}), "localhost:9092");
  EXPECT_EQ(brokers(file, {}), "file:1");
  EXPECT_EQ(brokers({}, env), "env:1");
  EXPECT_EQ(brokers(file, env), "env:1");
  EXPECT_EQ(brokers(flag, {}), "flag:1");
  EXPECT_EQ(brokers(both, {}), "flag:1");
  EXPECT_EQ(brokers(both, env), "flag:1");
}

TEST_F(ConfigTest, PrecedenceForPassThroughProperty) {
  std::string path = WriteConfig(
      "kafka: {producer: {linger: {ms: 1}, acks: '1', batch.size: 100}}\n");
  Env env = {{"EVENTBUS_KAFKA_PRODUCER_LINGER_MS", "2"},
             {"EVENTBUS_KAFKA_PRODUCER_ACKS", "all"}};
  Args args = {"--config", path, "--kafka.producer.linger.ms", "3"};

  absl::StatusOr<Config> config = LoadConfig(args, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "3"), Pair("acks", "all"),
                                   Pair("batch.size", "100")));

  config = LoadConfig({"--config", path}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "2"), Pair("acks", "all"),
                                   Pair("batch.size", "100")));

  config = LoadConfig({"--config", path}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->producer_properties,
              UnorderedElementsAre(Pair("linger.ms", "1"), Pair("acks", "1"),
                                   Pair("batch.size", "100")));
}

// Errors.

TEST_F(ConfigTest, UnknownKeyFromFlag) {
  absl::Status status = LoadError({"--kafka.brokerz=x:1"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("unknown config key \"kafka.brokerz\" "
                        "(flag --kafka.brokerz)"));

  status = LoadError({"--kafka.producerx=1"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("unknown config key \"kafka.producerx\" "
                        "(flag --kafka.producerx)"));
}

TEST_F(ConfigTest, UnknownKeyFromEnvironment) {
  absl::Status status = LoadError({}, {{"EVENTBUS_KAFKA_BROKERZ", "x:1"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("unknown config key"));
  EXPECT_THAT(Message(status),
              HasSubstr("environment variable EVENTBUS_KAFKA_BROKERZ"));
}

TEST_F(ConfigTest, UnknownKeyFromFile) {
  std::string path = WriteConfig("kafka:\n  brokers: a:1\n  x: 5\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("unknown config key \"kafka.x\" (file " + path +
                        ", line 3)"));
}

TEST_F(ConfigTest, SectionGivenAValueIsUnknownKey) {
  std::string path = WriteConfig("kafka: 5\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("unknown config key \"kafka\""));
}

TEST_F(ConfigTest, PassThroughNeedsPropertyName) {
  absl::Status status = LoadError({"--kafka.producer.=5"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("\"kafka.producer.\""));
  EXPECT_THAT(Message(status), HasSubstr("flag --kafka.producer."));
  EXPECT_THAT(Message(status), HasSubstr("property name"));

  status = LoadError({"--kafka.consumer", "x"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("flag --kafka.consumer)"));

  status = LoadError({}, {{"EVENTBUS_KAFKA_PRODUCER_", "5"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("environment variable EVENTBUS_KAFKA_PRODUCER_"));
  EXPECT_THAT(Message(status), HasSubstr("property name"));

  std::string path = WriteConfig("kafka: {producer: 5}\n");
  status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("file " + path));
  EXPECT_THAT(Message(status), HasSubstr("property name"));
}

TEST_F(ConfigTest, NotAnInteger) {
  absl::Status status =
      LoadError({}, {{"EVENTBUS_LIMITS_MAX_EVENT_BYTES", "abc"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(status),
            "invalid value \"abc\" for limits.max_event_bytes (environment "
            "variable EVENTBUS_LIMITS_MAX_EVENT_BYTES): not an integer");

  status = LoadError({"--limits.stream_max_in_flight=0x10"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("limits.stream_max_in_flight (flag "
                        "--limits.stream_max_in_flight): not an integer"));
}

TEST_F(ConfigTest, IntegerOutOfRange) {
  absl::Status status = LoadError({"--limits.max_event_bytes=100000001"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("invalid value \"100000001\" for "
                        "limits.max_event_bytes (flag "
                        "--limits.max_event_bytes): out of range"));

  status = LoadError({"--limits.stream_max_in_flight=0"});
  EXPECT_THAT(Message(status), HasSubstr("limits.stream_max_in_flight"));
  EXPECT_THAT(Message(status), HasSubstr("out of range"));

  std::string path = WriteConfig("limits: {max_buffered_bytes: 1023}\n");
  status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("limits.max_buffered_bytes (file " +
                                          path + ", line 1): out of range"));

  status = LoadError({"--limits.max_buffered_bytes=99999999999999999999"});
  EXPECT_THAT(Message(status), HasSubstr("out of range"));
}

TEST_F(ConfigTest, BadDuration) {
  absl::Status status = LoadError({"--limits.publish_timeout=soon"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("invalid value \"soon\" for limits.publish_timeout "
                        "(flag --limits.publish_timeout): not a duration"));

  status = LoadError({}, {{"EVENTBUS_LIMITS_PUBLISH_TIMEOUT", "0"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("environment variable "
                        "EVENTBUS_LIMITS_PUBLISH_TIMEOUT"));
  EXPECT_THAT(Message(status), HasSubstr("greater than 0"));

  status = LoadError({"--server.shutdown_grace=-1s"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("server.shutdown_grace"));
  EXPECT_THAT(Message(status), HasSubstr("negative"));

  status = LoadError({"--server.shutdown_grace=inf"});
  EXPECT_THAT(Message(status), HasSubstr("finite"));
}

TEST_F(ConfigTest, BadEnum) {
  absl::Status status = LoadError({"--log.level", "verbose"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("invalid value \"verbose\" for log.level (flag "
                        "--log.level): must be one of trace, debug, info, "
                        "warn, error, critical, off"));

  std::string path = WriteConfig("log: {format: xml}\n");
  status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("log.format (file " + path));
}

TEST_F(ConfigTest, BadStringsAndLists) {
  absl::Status status = LoadError({"--kafka.brokers="});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("kafka.brokers (flag --kafka.brokers)"));
  EXPECT_THAT(Message(status), HasSubstr("must not be empty"));

  status = LoadError({}, {{"EVENTBUS_SERVER_LISTEN", " , "}});
  EXPECT_THAT(Message(status), HasSubstr("server.listen"));
  EXPECT_THAT(Message(status), HasSubstr("must not be empty"));

  status = LoadError({"--server.listen=localhost"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("server.listen (flag --server.listen)"));
  EXPECT_THAT(Message(status), HasSubstr("not host:port"));

  status = LoadError({"--server.listen=a:1,b:70000"});
  EXPECT_THAT(Message(status), HasSubstr("\"b:70000\" is not host:port"));

  status = LoadError({"--server.metrics_listen=unix:/tmp/m.sock"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("server.metrics_listen (flag --server.metrics_listen)"));
  EXPECT_THAT(Message(status), HasSubstr("or empty for off"));

  status = LoadError({"--events.structured_topics=ok,not ok"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("events.structured_topics"));
  EXPECT_THAT(Message(status), HasSubstr("not a Kafka topic name"));
}

TEST_F(ConfigTest, EmptyMetricsListenTurnsTheListenerOff) {
  absl::StatusOr<Config> config =
      LoadConfig({"--server.metrics_listen="}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_listen, "");
  config = LoadConfig({}, {{"EVENTBUS_SERVER_METRICS_LISTEN", "127.0.0.1:0"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics_listen, "127.0.0.1:0");
}

TEST_F(ConfigTest, ListForSingleValueKeyInFile) {
  std::string path = WriteConfig("log:\n  level: [info, debug]\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("log.level (file " + path + ", line 2)"));
  EXPECT_THAT(Message(status), HasSubstr("single value"));
}

TEST_F(ConfigTest, KeySetTwiceInFile) {
  std::string path =
      WriteConfig("kafka.brokers: a:1\nkafka:\n  brokers: b:1\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("\"kafka.brokers\""));
  EXPECT_THAT(Message(status), HasSubstr("more than once"));
  EXPECT_THAT(Message(status), HasSubstr("file " + path + ", line 3"));
}

TEST_F(ConfigTest, InvalidValueInOverriddenSourceStillFails) {
  absl::Status status =
      LoadError({"--limits.max_event_bytes=5"},
                {{"EVENTBUS_LIMITS_MAX_EVENT_BYTES", "lots"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("environment variable "
                        "EVENTBUS_LIMITS_MAX_EVENT_BYTES"));
}

TEST_F(ConfigTest, MissingFile) {
  std::string path = ::testing::TempDir() + "eventbus_no_such_file.yaml";
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(status), HasSubstr("config file " + path));
  EXPECT_THAT(Message(status), HasSubstr("flag --config"));

  status = LoadError({}, {{"EVENTBUS_CONFIG", path}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(status), HasSubstr(path));
  EXPECT_THAT(Message(status),
              HasSubstr("environment variable EVENTBUS_CONFIG"));
}

TEST_F(ConfigTest, YamlParseError) {
  std::string path = WriteConfig("kafka:\n  brokers: [a:1, b:1\nlog: {\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("cannot parse config file " + path + ": line "));
}

TEST_F(ConfigTest, YamlParseErrorNamesTheLine) {
  std::string path = WriteConfig("kafka:\n  brokers: a:1\n   bad: [\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("cannot parse config file " + path + ": line 3"));
}

TEST_F(ConfigTest, FileTopLevelMustBeAMap) {
  std::string path = WriteConfig("- a\n- b\n");
  absl::Status status = LoadError({"--config", path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr(path));
}

TEST_F(ConfigTest, FlagWithoutValue) {
  absl::Status status = LoadError({"--kafka.brokers"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), Eq("flag --kafka.brokers has no value"));

  status = LoadError({"--log.level", "--log.format=json"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), Eq("flag --log.level has no value"));

  status = LoadError({"--config"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("flag --config has no value"));

  status = LoadError({"--config="});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("flag --config has no value"));
}

TEST_F(ConfigTest, PositionalArgument) {
  for (const std::string arg : {"serve", "-v", "--", "---x", "--=5"}) {
    absl::Status status = LoadError({"--log.level=info", arg});
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << arg;
    EXPECT_THAT(Message(status),
                HasSubstr("unexpected argument \"" + arg + "\""));
  }
}

TEST_F(ConfigTest, HelpDescribesEveryKey) {
  std::string help = ConfigHelp();
  for (const char* text :
       {"kafka.brokers (default: localhost:9092)", "EVENTBUS_KAFKA_BROKERS",
        "kafka.client_id (default: eventbus-sidecar)",
        "kafka.producer.<property>", "EVENTBUS_KAFKA_PRODUCER_<PROPERTY>",
        "kafka.consumer.<property>", "EVENTBUS_KAFKA_CONSUMER_<PROPERTY>",
        "server.listen (default: 0.0.0.0:50051)", "EVENTBUS_SERVER_LISTEN",
        "server.shutdown_grace (default: 10s)",
        "events.source (default: //eventbus/<hostname>)",
        "events.structured_topics", "EVENTBUS_EVENTS_STRUCTURED_TOPICS",
        "limits.max_event_bytes (default: 1000000)",
        "EVENTBUS_LIMITS_MAX_EVENT_BYTES",
        "limits.stream_max_in_flight (default: 10000)",
        "limits.max_buffered_bytes (default: 67108864)",
        "limits.publish_timeout (default: 30s)", "log.level (default: info)",
        "log.format (default: text)", "--config PATH", "EVENTBUS_CONFIG",
        "flag --limits.max_event_bytes=VALUE"}) {
    EXPECT_THAT(help, HasSubstr(text));
  }
}

TEST_F(ConfigTest, ProcessEnvironment) {
  ASSERT_EQ(setenv("EVENTBUS_CONFIG_TEST_VAR", "a=b", 1), 0);
  std::map<std::string, std::string> env = ProcessEnvironment();
  unsetenv("EVENTBUS_CONFIG_TEST_VAR");
  EXPECT_THAT(env, testing::Contains(Pair("EVENTBUS_CONFIG_TEST_VAR", "a=b")));
}

TEST_F(ConfigTest, SharedKafkaPropertiesFromEveryPlace) {
  const std::string path = WriteConfig(
      "kafka:\n"
      "  brokers: b:9093\n"
      "  security.protocol: SASL_SSL\n"
      "  sasl:\n"
      "    mechanism: SCRAM-SHA-512\n"
      "  producer:\n"
      "    linger.ms: 5\n");
  absl::StatusOr<Config> config = LoadConfig(
      {"--config", path, "--kafka.ssl.ca.location=/ca.pem"},
      {{"EVENTBUS_KAFKA_SASL_USERNAME", "app"},
       {"EVENTBUS_KAFKA_SASL_PASSWORD", "s3cret"},
       {"EVENTBUS_KAFKA_BROKERS", "e:9093"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->brokers, "e:9093");
  EXPECT_THAT(config->kafka_properties,
              UnorderedElementsAre(Pair("security.protocol", "SASL_SSL"),
                                   Pair("sasl.mechanism", "SCRAM-SHA-512"),
                                   Pair("sasl.username", "app"),
                                   Pair("sasl.password", "s3cret"),
                                   Pair("ssl.ca.location", "/ca.pem")));
  EXPECT_THAT(config->producer_properties, ElementsAre(Pair("linger.ms", "5")));
  // Secrets never reach --help.
  EXPECT_THAT(ConfigHelp(), Not(HasSubstr("s3cret")));
}

TEST_F(ConfigTest, TlsKeysGoTogether) {
  absl::StatusOr<Config> config = LoadConfig(
      {"--server.listen=unix:/tmp/a.sock,0.0.0.0:50051,127.0.0.1:50052",
       "--server.tls.cert_file=/c.pem", "--server.tls.key_file=/k.pem",
       "--server.tls.client_ca_file=/ca.pem", "--server.tls.listen=0.0.0.0:50051",
       "--server.tls.reload_interval=2s", "--server.unix_socket_mode=0600"},
      {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(TlsListenAddresses(*config), ElementsAre("0.0.0.0:50051"));
  EXPECT_EQ(UnixSocketMode(*config), 0600u);
  EXPECT_EQ(config->tls_reload_interval, absl::Seconds(2));

  // Without server.tls.listen: every TCP address, never a Unix socket.
  config = LoadConfig({"--server.listen=unix:/tmp/a.sock,0.0.0.0:1,127.0.0.1:2",
                       "--server.tls.cert_file=/c.pem", "--server.tls.key_file=/k.pem"},
                      {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(TlsListenAddresses(*config), ElementsAre("0.0.0.0:1", "127.0.0.1:2"));
  EXPECT_EQ(UnixSocketMode(*config), 0660u);

  EXPECT_THAT(Message(LoadError({"--server.tls.cert_file=/c.pem"})),
              HasSubstr("server.tls.cert_file and server.tls.key_file go together"));
  EXPECT_THAT(Message(LoadError({"--server.tls.client_ca_file=/ca.pem"})),
              HasSubstr("server.tls.client_ca_file needs server.tls.cert_file"));
  EXPECT_THAT(Message(LoadError({"--server.tls.cert_file=/c.pem",
                                 "--server.tls.key_file=/k.pem",
                                 "--server.tls.listen=127.0.0.1:9"})),
              HasSubstr("is not one of server.listen"));
  EXPECT_THAT(Message(LoadError({"--server.listen=unix:/tmp/a.sock",
                                 "--server.tls.cert_file=/c.pem",
                                 "--server.tls.key_file=/k.pem"})),
              HasSubstr("no TCP address"));
  EXPECT_THAT(Message(LoadError({"--server.unix_socket_mode=0999"})),
              HasSubstr("not an octal file mode"));
  EXPECT_THAT(Message(LoadError({"--server.unix_socket_mode=rw"})),
              HasSubstr("server.unix_socket_mode"));
}

}  // namespace
}  // namespace eventbus::server
