#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace eventbus::server {

// The sidecar's settings. Each member names its config key; ConfigHelp()
// describes every key. A default-constructed Config holds the defaults,
// except `source`, which LoadConfig fills with "//eventbus/<hostname>".
struct Config {
  // kafka.brokers: bootstrap brokers, "host:port,host:port".
  std::string brokers = "localhost:9092";
  // kafka.client_id
  std::string client_id = "eventbus-sidecar";
  // kafka.producer.<librdkafka property>: passed through, unchecked.
  std::map<std::string, std::string> producer_properties;
  // kafka.consumer.<librdkafka property>: passed through, unchecked.
  std::map<std::string, std::string> consumer_properties;
  // kafka.<librdkafka property>: for the producer, the consumers and the
  // admin client alike (security.protocol, sasl.*, ssl.*); the
  // producer/consumer-specific ones win.
  std::map<std::string, std::string> kafka_properties;

  // server.listen: "host:port" or "unix:/path" each; never empty.
  std::vector<std::string> listen = {"0.0.0.0:50051"};
  // server.unix_socket_mode: octal file mode of the Unix sockets.
  std::string unix_socket_mode = "0660";
  // server.tls.*: TLS on TCP listeners (all of them, or those of
  // tls_listen); mTLS when client_ca_file is set. Empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  std::vector<std::string> tls_listen;
  absl::Duration tls_reload_interval = absl::Seconds(10);
  // server.shutdown_grace (>= 0).
  absl::Duration shutdown_grace = absl::Seconds(10);
  // server.metrics_listen: "host:port" of the HTTP metrics and probe
  // listener; empty: none.
  std::string metrics_listen = "0.0.0.0:9464";

  // admin.allow_changes: serve CreateTopic, DeleteTopic and
  // ResetGroupOffsets.
  bool admin_allow_changes = false;

  // events.source: never empty after LoadConfig.
  std::string source;
  // events.structured_topics: topics written in CloudEvents structured mode.
  std::vector<std::string> structured_topics;

  // limits.max_event_bytes (1..100000000).
  int64_t max_event_bytes = 1000000;
  // limits.stream_max_in_flight: events per PublishStream awaiting Kafka
  // (1..1000000).
  int64_t stream_max_in_flight = 10000;
  // limits.max_buffered_bytes: bytes of events waiting for a broker or for
  // room in the producer queue (>= 1024).
  int64_t max_buffered_bytes = 64 << 20;
  // limits.publish_timeout: deadline of a publish whose call has none, and
  // the longest any publish waits (> 0).
  absl::Duration publish_timeout = absl::Seconds(30);

  // subscribe.*: defaults and caps of Subscribe streams.
  int64_t subscribe_max_outstanding_messages = 1000;
  int64_t subscribe_max_outstanding_messages_cap = 100000;
  int64_t subscribe_max_outstanding_bytes = 16 << 20;
  int64_t subscribe_max_outstanding_bytes_cap = 256 << 20;
  int64_t subscribe_read_ahead_bytes = 32 << 20;
  int64_t subscribe_max_streams = 1000;
  absl::Duration subscribe_ack_deadline = absl::Seconds(30);
  int64_t subscribe_max_delivery_attempts = 5;
  absl::Duration subscribe_retry_backoff = absl::Seconds(1);
  absl::Duration subscribe_retry_backoff_max = absl::Seconds(60);
  std::string subscribe_dead_letter_suffix = ".dlq";

  // log.level: trace, debug, info, warn, error, critical or off.
  std::string log_level = "info";
  // log.format: text or json.
  std::string log_format = "text";

  friend bool operator==(const Config&, const Config&) = default;
};

// Loads the configuration. Precedence, per key (pass-through librdkafka
// properties included): flag > environment > file > default.
//
// `args` are argv[1..]: `--config PATH` / `--config=PATH` names the YAML file
// (else the environment variable EVENTBUS_CONFIG, else no file), and every
// key is accepted as `--key=value` or `--key value` (a value starting with
// "--" needs the first form); a repeated flag's last value wins. --help is
// not handled here: it is an unknown key, so callers check for it first.
//
// `env` is the process environment (name -> value); a key `a.b_c` is read
// from EVENTBUS_A_B_C, a pass-through property from
// EVENTBUS_KAFKA_PRODUCER_<PROPERTY> (underscores become dots). Lists are
// comma-separated (or YAML sequences in the file); durations are
// absl::ParseDuration text, a bare integer meaning milliseconds.
//
// Every source is checked in full: an unknown key, a malformed argument, a
// key set twice in the file or an invalid value from any source (even one a
// higher source overrides) gives InvalidArgument naming the key and where it
// came from. A config file that cannot be read gives the errno status
// (NotFound when missing); one that does not parse gives InvalidArgument
// with the line. Pass-through property values are not checked here
// (librdkafka checks them). Never throws.
absl::StatusOr<Config> LoadConfig(
    const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env);

// The listen addresses (of config.listen) that serve TLS.
std::vector<std::string> TlsListenAddresses(const Config& config);

// The octal server.unix_socket_mode as a mode_t value.
unsigned UnixSocketMode(const Config& config);

// The text for --help: usage, the sources and their precedence, and every key
// with its default, meaning, environment variable and flag.
std::string ConfigHelp();

// The environment of this process (from `environ`) as name -> value.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace eventbus::server
