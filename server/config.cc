#include "server/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <exception>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"
#include "kafka/rdkafka_producer.h"

extern char** environ;

namespace eventbus::server {
namespace {

constexpr absl::string_view kEnvPrefix = "EVENTBUS_";

enum class Kind { kString, kList, kInt, kDuration, kEnum, kBool, kProperties };

// Returns why `item` is not acceptable, or "" when it is.
using ItemCheck = std::string (*)(const std::string& item);

std::string CheckListenAddress(const std::string& item);
std::string CheckMetricsAddress(const std::string& item);
std::string CheckTopicName(const std::string& item);
std::string CheckFileMode(const std::string& item);

// One config key. The Config member it sets is the one pointer that matches
// `kind` (kEnum uses `text`).
struct KeySpec {
  const char* key;  // kProperties: the prefix; "<key>.<property>" is the key
  const char* default_text;
  const char* help;
  Kind kind;
  std::string Config::*text = nullptr;
  std::vector<std::string> Config::*list = nullptr;
  int64_t Config::*integer = nullptr;
  absl::Duration Config::*duration = nullptr;
  std::map<std::string, std::string> Config::*properties = nullptr;
  bool Config::*boolean = nullptr;
  int64_t min = 0;                                   // kInt
  int64_t max = std::numeric_limits<int64_t>::max();  // kInt
  bool zero_ok = false;     // kDuration: 0 is allowed
  bool non_empty = false;   // kString, kList
  bool comma_list = false;  // kString: a comma-separated list kept as text
  const char* choices = nullptr;  // kEnum: comma-separated
  ItemCheck check = nullptr;      // kString, kList: each value or item
};

// The one table of keys: lookup, environment names and ConfigHelp() all come
// from it. Defaults here are help text; the values are Config's initializers.
constexpr KeySpec kKeys[] = {
    {.key = "kafka.brokers",
     .default_text = "localhost:9092",
     .help = "Bootstrap brokers, comma-separated host:port (librdkafka "
             "bootstrap.servers). A YAML sequence also works.",
     .kind = Kind::kString,
     .text = &Config::brokers,
     .non_empty = true,
     .comma_list = true},
    {.key = "kafka.client_id",
     .default_text = "eventbus-sidecar",
     .help = "Client id sent to the brokers (librdkafka client.id).",
     .kind = Kind::kString,
     .text = &Config::client_id,
     .non_empty = true},
    {.key = "kafka.producer",
     .default_text = "(none)",
     .help = "Any librdkafka producer property, e.g. "
             "kafka.producer.linger.ms=5 or "
             "EVENTBUS_KAFKA_PRODUCER_LINGER_MS=5. Passed to librdkafka "
             "unchecked.",
     .kind = Kind::kProperties,
     .properties = &Config::producer_properties},
    {.key = "kafka.consumer",
     .default_text = "(none)",
     .help = "Any librdkafka consumer property, e.g. "
             "kafka.consumer.fetch.max.bytes=1048576. Passed to librdkafka "
             "unchecked.",
     .kind = Kind::kProperties,
     .properties = &Config::consumer_properties},
    {.key = "kafka",
     .default_text = "(none)",
     .help = "Any librdkafka property for the producer, the consumers and "
             "the admin client alike, e.g. kafka.security.protocol=SASL_SSL, "
             "kafka.sasl.mechanism=SCRAM-SHA-512, "
             "EVENTBUS_KAFKA_SASL_PASSWORD=... (kafka.producer.* and "
             "kafka.consumer.* win over these). Values of properties that "
             "hold secrets (passwords, keys) are never logged or shown.",
     .kind = Kind::kProperties,
     .properties = &Config::kafka_properties},
    {.key = "server.listen",
     .default_text = "0.0.0.0:50051",
     .help = "Addresses the gRPC server listens on: a list of host:port or "
             "unix:/path. Port 0 picks a free port.",
     .kind = Kind::kList,
     .list = &Config::listen,
     .non_empty = true,
     .check = &CheckListenAddress},
    {.key = "server.unix_socket_mode",
     .default_text = "0660",
     .help = "File mode (octal) of the Unix sockets of server.listen: 0660 "
             "lets the sidecar's user and group connect. Unix sockets are "
             "always plaintext.",
     .kind = Kind::kString,
     .text = &Config::unix_socket_mode,
     .non_empty = true,
     .check = &CheckFileMode},
    {.key = "server.tls.cert_file",
     .default_text = "(none)",
     .help = "PEM certificate chain the TCP listeners present (TLS); needs "
             "server.tls.key_file. Reloaded when the file changes.",
     .kind = Kind::kString,
     .text = &Config::tls_cert_file},
    {.key = "server.tls.key_file",
     .default_text = "(none)",
     .help = "PEM private key of server.tls.cert_file.",
     .kind = Kind::kString,
     .text = &Config::tls_key_file},
    {.key = "server.tls.client_ca_file",
     .default_text = "(none)",
     .help = "PEM CA certificates for mTLS: clients must present a "
             "certificate signed by one of them. Empty: no client "
             "certificate is asked for.",
     .kind = Kind::kString,
     .text = &Config::tls_client_ca_file},
    {.key = "server.tls.listen",
     .default_text = "(every TCP address of server.listen)",
     .help = "The server.listen addresses that serve TLS; the other TCP "
             "addresses stay plaintext (e.g. one for kubelet's gRPC probes, "
             "which cannot speak TLS).",
     .kind = Kind::kList,
     .list = &Config::tls_listen,
     .check = &CheckListenAddress},
    {.key = "server.tls.reload_interval",
     .default_text = "10s",
     .help = "How often the certificate, key and CA files are checked for "
             "changes (rotated in place, e.g. by cert-manager); new "
             "connections get the new ones, open ones go on.",
     .kind = Kind::kDuration,
     .duration = &Config::tls_reload_interval},
    {.key = "server.shutdown_grace",
     .default_text = "10s",
     .help = "How long shutdown waits for calls in progress and pending Kafka "
             "deliveries before cancelling them (0 allowed).",
     .kind = Kind::kDuration,
     .duration = &Config::shutdown_grace,
     .zero_ok = true},
    {.key = "server.metrics_listen",
     .default_text = "0.0.0.0:9464",
     .help = "host:port of the plain-HTTP listener for operators: Prometheus "
             "metrics on /metrics, /healthz (liveness) and /readyz (ready "
             "when gRPC health is SERVING). Port 0 picks a free port; empty "
             "turns it off.",
     .kind = Kind::kString,
     .text = &Config::metrics_listen,
     .check = &CheckMetricsAddress},
    {.key = "admin.allow_changes",
     .default_text = "false",
     .help = "Serve the Admin calls that change the cluster (CreateTopic, "
             "DeleteTopic, ResetGroupOffsets); when false they end with "
             "PERMISSION_DENIED. Read-only Admin calls are always served.",
     .kind = Kind::kBool,
     .boolean = &Config::admin_allow_changes},
    {.key = "events.source",
     .default_text = "//eventbus/<hostname>",
     .help = "The CloudEvents source (URI-reference) that identifies this "
             "sidecar.",
     .kind = Kind::kString,
     .text = &Config::source,
     .non_empty = true},
    {.key = "events.structured_topics",
     .default_text = "(none)",
     .help = "Topics whose records are written in CloudEvents structured mode "
             "(the whole event as JSON in the value); other topics use binary "
             "mode (attributes in headers).",
     .kind = Kind::kList,
     .list = &Config::structured_topics,
     .check = &CheckTopicName},
    {.key = "limits.max_event_bytes",
     .default_text = "1000000",
     .help = "Largest event accepted, in bytes (1..100000000).",
     .kind = Kind::kInt,
     .integer = &Config::max_event_bytes,
     .min = 1,
     .max = 100000000},
    {.key = "limits.stream_max_in_flight",
     .default_text = "10000",
     .help = "Events of one PublishStream that may await Kafka's "
             "acknowledgement at a time (1..1000000).",
     .kind = Kind::kInt,
     .integer = &Config::stream_max_in_flight,
     .min = 1,
     .max = 1000000},
    {.key = "limits.max_buffered_bytes",
     .default_text = "67108864",
     .help = "Bytes of events that may wait for a broker or for room in the "
             "producer queue (at least 1024).",
     .kind = Kind::kInt,
     .integer = &Config::max_buffered_bytes,
     .min = 1024},
    {.key = "limits.publish_timeout",
     .default_text = "30s",
     .help = "Deadline of a publish whose call carries none, and the "
             "longest any publish waits for Kafka (> 0).",
     .kind = Kind::kDuration,
     .duration = &Config::publish_timeout},
    {.key = "subscribe.max_outstanding_messages",
     .default_text = "1000",
     .help = "Default flow-control limit of a Subscribe stream: deliveries "
             "sent and not yet acked (1..subscribe.max_outstanding_messages_cap).",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_outstanding_messages,
     .min = 1,
     .max = 1000000},
    {.key = "subscribe.max_outstanding_messages_cap",
     .default_text = "100000",
     .help = "Largest max_outstanding_messages a subscription may ask for.",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_outstanding_messages_cap,
     .min = 1,
     .max = 1000000},
    {.key = "subscribe.max_outstanding_bytes",
     .default_text = "16777216",
     .help = "Default flow-control limit of a Subscribe stream: bytes of "
             "deliveries sent and not yet acked.",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_outstanding_bytes,
     .min = 1024,
     .max = int64_t{1} << 40},
    {.key = "subscribe.max_outstanding_bytes_cap",
     .default_text = "268435456",
     .help = "Largest max_outstanding_bytes a subscription may ask for.",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_outstanding_bytes_cap,
     .min = 1024,
     .max = int64_t{1} << 40},
    {.key = "subscribe.read_ahead_bytes",
     .default_text = "33554432",
     .help = "Bytes of records a Subscribe stream's consumer may fetch ahead "
             "of the client (librdkafka's queued.max.messages.kbytes), so a "
             "client working at its limit never waits for a fetch; when it "
             "is full, fetching stops until the client acks.",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_read_ahead_bytes,
     .min = 0,
     .max = int64_t{1} << 40},
    {.key = "subscribe.max_streams",
     .default_text = "1000",
     .help = "Subscribe streams this sidecar serves at once (each is a Kafka "
             "consumer); more get RESOURCE_EXHAUSTED.",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_streams,
     .min = 1,
     .max = 1000000},
    {.key = "subscribe.ack_deadline",
     .default_text = "30s",
     .help = "Default time a delivery may stay unacked before it is "
             "redelivered.",
     .kind = Kind::kDuration,
     .duration = &Config::subscribe_ack_deadline},
    {.key = "subscribe.max_delivery_attempts",
     .default_text = "5",
     .help = "Default number of deliveries of an event before it goes to the "
             "dead-letter topic (1..1000).",
     .kind = Kind::kInt,
     .integer = &Config::subscribe_max_delivery_attempts,
     .min = 1,
     .max = 1000},
    {.key = "subscribe.retry_backoff",
     .default_text = "1s",
     .help = "Delay before redelivering a nacked or expired event, doubled on "
             "each attempt up to subscribe.retry_backoff_max (a nack may give "
             "its own delay).",
     .kind = Kind::kDuration,
     .duration = &Config::subscribe_retry_backoff,
     .zero_ok = true},
    {.key = "subscribe.retry_backoff_max",
     .default_text = "60s",
     .help = "Longest delay before a redelivery.",
     .kind = Kind::kDuration,
     .duration = &Config::subscribe_retry_backoff_max,
     .zero_ok = true},
    {.key = "subscribe.dead_letter_suffix",
     .default_text = ".dlq",
     .help = "A subscription without a dead-letter topic sends an event of "
             "topic T to T + this suffix.",
     .kind = Kind::kString,
     .text = &Config::subscribe_dead_letter_suffix,
     .non_empty = true},
    {.key = "log.level",
     .default_text = "info",
     .help = "Log level: trace, debug, info, warn, error, critical or off.",
     .kind = Kind::kEnum,
     .text = &Config::log_level,
     .choices = "trace,debug,info,warn,error,critical,off"},
    {.key = "log.format",
     .default_text = "text",
     .help = "Log format: text, or json (one JSON object per line).",
     .kind = Kind::kEnum,
     .text = &Config::log_format,
     .choices = "text,json"},
};

// One value for one key, as a source gave it.
struct Setting {
  std::string key;
  std::string value;
  std::optional<std::vector<std::string>> items;  // set for a YAML sequence
  std::string origin;  // "flag --k", "environment variable V", "file F, line N"
};

std::string Quoted(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

absl::Status UnknownKey(absl::string_view key, absl::string_view origin) {
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown config key ", Quoted(key), " (", origin, "); see --help"));
}

absl::Status InvalidValue(const Setting& setting, absl::string_view reason) {
  std::string shown =
      setting.items
          ? absl::StrCat("[", absl::StrJoin(*setting.items, ", "), "]")
          : setting.value;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value ", Quoted(shown), " for ", setting.key, " (",
                   setting.origin, "): ", reason));
}

bool AllDigits(absl::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// Whether `item` is host:port with a port in 0..65535.
bool IsHostPort(const std::string& item) {
  const size_t colon = item.rfind(':');
  int port = 0;
  return colon != std::string::npos && colon != 0 &&
         AllDigits(absl::string_view(item).substr(colon + 1)) &&
         absl::SimpleAtoi(absl::string_view(item).substr(colon + 1), &port) &&
         port <= 65535;
}

std::string CheckListenAddress(const std::string& item) {
  absl::string_view path = item;
  if (absl::ConsumePrefix(&path, "unix:") ||
      absl::ConsumePrefix(&path, "unix-abstract:")) {
    return path.empty() ? absl::StrCat(Quoted(item), " has no socket path")
                        : "";
  }
  return IsHostPort(item) ? ""
                          : absl::StrCat(Quoted(item),
                                         " is not host:port (port 0..65535) "
                                         "or unix:/path");
}

std::string CheckFileMode(const std::string& item) {
  unsigned mode = 0;
  bool octal = !item.empty() && item.size() <= 4 &&
               std::all_of(item.begin(), item.end(),
                           [](char c) { return c >= '0' && c <= '7'; });
  if (octal) mode = static_cast<unsigned>(std::stoul(item, nullptr, 8));
  return octal && mode <= 0777
             ? ""
             : absl::StrCat(Quoted(item),
                            " is not an octal file mode such as 0660");
}

bool IsTcpAddress(absl::string_view address) {
  return !absl::StartsWith(address, "unix:") &&
         !absl::StartsWith(address, "unix-abstract:");
}

// Checks that need several keys: the TLS files go together, and
// server.tls.listen names TCP addresses of server.listen.
absl::Status CheckTogether(const Config& c) {
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "server.tls.cert_file and server.tls.key_file go together: set both "
        "or neither");
  }
  const bool tls = !c.tls_cert_file.empty();
  if (!tls && !c.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "server.tls.client_ca_file needs server.tls.cert_file and "
        "server.tls.key_file (mTLS is TLS with client certificates)");
  }
  if (!tls && !c.tls_listen.empty()) {
    return absl::InvalidArgumentError(
        "server.tls.listen needs server.tls.cert_file and server.tls.key_file");
  }
  for (const std::string& address : c.tls_listen) {
    if (!IsTcpAddress(address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server.tls.listen: ", Quoted(address),
          " is a Unix socket; Unix sockets are plaintext (their file mode, "
          "server.unix_socket_mode, protects them)"));
    }
    if (std::find(c.listen.begin(), c.listen.end(), address) == c.listen.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server.tls.listen: ", Quoted(address),
                       " is not one of server.listen"));
    }
  }
  if (tls && TlsListenAddresses(c).empty()) {
    return absl::InvalidArgumentError(
        "server.tls.cert_file is set but server.listen has no TCP address to "
        "serve TLS on");
  }
  if (c.tls_reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        "server.tls.reload_interval: must be at least 1s");
  }
  return absl::OkStatus();
}

std::string CheckMetricsAddress(const std::string& item) {
  return item.empty() || IsHostPort(item)
             ? ""
             : absl::StrCat(Quoted(item),
                            " is not host:port (port 0..65535), or empty for "
                            "off");
}

std::string CheckTopicName(const std::string& item) {
  bool legal = item.size() <= 249 && item != "." && item != ".." &&
               std::all_of(item.begin(), item.end(), [](char c) {
                 return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                        c == '.' || c == '_' || c == '-';
               });
  return legal ? "" : absl::StrCat(Quoted(item),
                                   " is not a Kafka topic name (at most 249 "
                                   "of a-z A-Z 0-9 . _ -)");
}

// Trims the items and drops the empty ones.
std::vector<std::string> CleanItems(const std::vector<std::string>& items) {
  std::vector<std::string> cleaned;
  for (const std::string& item : items) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(item);
    if (!trimmed.empty()) cleaned.emplace_back(trimmed);
  }
  return cleaned;
}

std::vector<std::string> SplitList(absl::string_view text) {
  std::vector<std::string> items = absl::StrSplit(text, ',');
  return CleanItems(items);
}

// "EVENTBUS_" + `key` upper-cased, dots and dashes as underscores.
std::string EnvName(absl::string_view key) {
  std::string name(kEnvPrefix);
  for (char c : key) {
    name += (c == '.' || c == '-') ? '_' : absl::ascii_toupper(c);
  }
  return name;
}

// A key's spec and, for a pass-through key, the librdkafka property name.
struct Resolved {
  const KeySpec* spec;
  std::string property;
};

absl::StatusOr<Resolved> Resolve(const std::string& key,
                                 absl::string_view origin) {
  for (const KeySpec& spec : kKeys) {
    if (spec.kind != Kind::kProperties) {
      if (key == spec.key) return Resolved{&spec, ""};
      continue;
    }
    absl::string_view rest = key;
    if (!absl::ConsumePrefix(&rest, spec.key)) continue;
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ".")) continue;
    // Under the shared "kafka." prefix a typo of a key ("kafka.brokerz")
    // would pass as a property: only librdkafka's own properties do.
    if (spec.properties == &Config::kafka_properties &&
        (rest.empty() || !kafka::IsRdKafkaProperty(rest))) {
      return UnknownKey(key, origin);
    }
    if (rest.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key ", Quoted(key), " (", origin,
          ") needs a librdkafka property name after \"", spec.key, ".\""));
    }
    return Resolved{&spec, std::string(rest)};
  }
  return UnknownKey(key, origin);
}

absl::Status Apply(const Setting& setting, Config& config) {
  absl::StatusOr<Resolved> resolved = Resolve(setting.key, setting.origin);
  if (!resolved.ok()) return resolved.status();
  const KeySpec& spec = *resolved->spec;
  if (setting.items && spec.kind != Kind::kList && !spec.comma_list) {
    return InvalidValue(setting, "this key takes a single value, not a list");
  }
  std::string text(absl::StripAsciiWhitespace(setting.value));
  switch (spec.kind) {
    case Kind::kProperties:
      (config.*spec.properties)[resolved->property] = setting.value;
      return absl::OkStatus();
    case Kind::kString:
    case Kind::kList: {
      std::vector<std::string> items;
      if (spec.kind == Kind::kList || spec.comma_list) {
        items = setting.items ? CleanItems(*setting.items) : SplitList(text);
      } else if (!text.empty()) {
        items.push_back(text);
      }
      if (spec.non_empty && items.empty()) {
        return InvalidValue(setting, "must not be empty");
      }
      for (const std::string& item : items) {
        std::string reason = spec.check ? spec.check(item) : "";
        if (!reason.empty()) return InvalidValue(setting, reason);
      }
      if (spec.kind == Kind::kList) {
        config.*spec.list = std::move(items);
      } else {
        config.*spec.text = absl::StrJoin(items, ",");
      }
      return absl::OkStatus();
    }
    case Kind::kInt: {
      int64_t value = 0;
      if (!absl::SimpleAtoi(text, &value)) {
        return InvalidValue(setting, AllDigits(text) ? "out of range"
                                                     : "not an integer");
      }
      if (value < spec.min || value > spec.max) {
        return InvalidValue(
            setting,
            spec.max == std::numeric_limits<int64_t>::max()
                ? absl::StrCat("out of range: must be at least ", spec.min)
                : absl::StrCat("out of range: must be ", spec.min, "..",
                               spec.max));
      }
      config.*spec.integer = value;
      return absl::OkStatus();
    }
    case Kind::kDuration: {
      absl::Duration value;
      int64_t millis = 0;
      if (AllDigits(text)) {
        if (!absl::SimpleAtoi(text, &millis)) {
          return InvalidValue(setting, "out of range");
        }
        value = absl::Milliseconds(millis);
      } else if (!absl::ParseDuration(text, &value)) {
        return InvalidValue(setting,
                            "not a duration (e.g. 10s, 500ms, 1m30s; a bare "
                            "integer is milliseconds)");
      }
      if (value == absl::InfiniteDuration() ||
          value == -absl::InfiniteDuration()) {
        return InvalidValue(setting, "must be finite");
      }
      if (value < absl::ZeroDuration() ||
          (value == absl::ZeroDuration() && !spec.zero_ok)) {
        return InvalidValue(setting, spec.zero_ok ? "must not be negative"
                                                  : "must be greater than 0");
      }
      config.*spec.duration = value;
      return absl::OkStatus();
    }
    case Kind::kEnum: {
      std::vector<absl::string_view> choices =
          absl::StrSplit(spec.choices, ',');
      if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
        return InvalidValue(
            setting,
            absl::StrCat("must be one of ", absl::StrJoin(choices, ", ")));
      }
      config.*spec.text = text;
      return absl::OkStatus();
    }
    case Kind::kBool: {
      if (text != "true" && text != "false") {
        return InvalidValue(setting, "must be true or false");
      }
      config.*spec.boolean = text == "true";
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unhandled config key kind");
}

absl::Status ParseFlags(const std::vector<std::string>& args,
                        std::vector<Setting>& settings,
                        std::optional<std::string>& config_path) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view name = args[i];
    if (!absl::ConsumePrefix(&name, "--") || name.empty() ||
        name.front() == '-' || name.front() == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument ", Quoted(args[i]),
                       ": expected --key=value or --key value; see --help"));
    }
    std::string key;
    std::string value;
    if (size_t eq = name.find('='); eq != absl::string_view::npos) {
      key = std::string(name.substr(0, eq));
      value = std::string(name.substr(eq + 1));
    } else {
      key = std::string(name);
      if (i + 1 == args.size() || absl::StartsWith(args[i + 1], "--")) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", key, " has no value"));
      }
      value = args[++i];
    }
    if (key == "config") {
      if (value.empty()) {
        return absl::InvalidArgumentError("flag --config has no value");
      }
      config_path = value;
      continue;
    }
    settings.push_back(
        {key, value, std::nullopt, absl::StrCat("flag --", key)});
  }
  return absl::OkStatus();
}

// Kubernetes gives every pod Docker-link style variables for each Service in
// its namespace. A Service named "eventbus" yields EVENTBUS_SERVICE_HOST,
// EVENTBUS_SERVICE_PORT, EVENTBUS_SERVICE_PORT_<NAME>, EVENTBUS_PORT and
// EVENTBUS_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]. They share our prefix but are
// not configuration, and failing on them would stop the sidecar from starting
// in exactly the namespace it is deployed to. No key maps to these names.
bool IsKubernetesServiceVariable(absl::string_view suffix) {
  return suffix == "SERVICE_HOST" || suffix == "SERVICE_PORT" ||
         absl::StartsWith(suffix, "SERVICE_PORT_") || suffix == "PORT" ||
         absl::StartsWith(suffix, "PORT_");
}

// The key an environment variable (given without "EVENTBUS_") sets: a plain
// key's exact name first, then the longest pass-through prefix, whose rest
// is the property lower-cased with '_' as '.'.
std::optional<std::string> EnvToKey(absl::string_view suffix) {
  const KeySpec* best = nullptr;
  size_t best_length = 0;
  for (const KeySpec& spec : kKeys) {
    std::string name = EnvName(spec.key).substr(kEnvPrefix.size());
    if (spec.kind != Kind::kProperties) {
      if (suffix == name) return std::string(spec.key);
      continue;
    }
    if ((suffix == name || absl::StartsWith(suffix, name + "_")) &&
        name.size() > best_length) {
      best = &spec;
      best_length = name.size();
    }
  }
  if (best == nullptr) return std::nullopt;
  std::string property = absl::AsciiStrToLower(
      suffix.substr(std::min(suffix.size(), best_length + 1)));
  std::replace(property.begin(), property.end(), '_', '.');
  return absl::StrCat(best->key, ".", property);
}

absl::Status ParseEnvironment(const std::map<std::string, std::string>& env,
                              std::vector<Setting>& settings,
                              std::optional<std::string>& config_path) {
  for (const auto& [name, value] : env) {
    absl::string_view suffix = name;
    if (!absl::ConsumePrefix(&suffix, kEnvPrefix)) continue;
    if (suffix == "CONFIG") {
      if (!value.empty()) config_path = value;
      continue;
    }
    if (IsKubernetesServiceVariable(suffix)) continue;
    std::string origin = absl::StrCat("environment variable ", name);
    std::optional<std::string> key = EnvToKey(suffix);
    if (!key) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown config key (", origin,
                       "): no key maps to this variable; see --help"));
    }
    settings.push_back({*key, value, std::nullopt, origin});
  }
  return absl::OkStatus();
}

std::string FileOrigin(const std::string& path, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return absl::StrCat("file ", path);
  return absl::StrCat("file ", path, ", line ", mark.line + 1);
}

// True when `key` is a section of the table ("kafka", "kafka.producer").
bool IsSection(absl::string_view key) {
  for (const KeySpec& spec : kKeys) {
    absl::string_view name = spec.key;
    if ((spec.kind == Kind::kProperties && name == key) ||
        (absl::StartsWith(name, key) && name.size() > key.size() &&
         name[key.size()] == '.')) {
      return true;
    }
  }
  return false;
}

// What a config file may expand to, aliases included. A YAML alias can name
// the node it is in ("a: &x {b: *x}", endless) or be repeated to expand
// exponentially; a real config is a few levels and a few hundred nodes.
constexpr int kMaxFileDepth = 32;
constexpr size_t kMaxFileNodes = 10000;

// Appends the leaves of `node` (at dotted `key`, `depth` maps deep) to
// `out`; `nodes` counts the nodes seen. May throw YAML::Exception.
absl::Status Flatten(const YAML::Node& node, const std::string& key,
                     const YAML::Mark& mark, const std::string& path,
                     int depth, size_t& nodes, std::vector<Setting>& out) {
  std::string origin = FileOrigin(path, mark);
  if (depth > kMaxFileDepth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file nests more than ", kMaxFileDepth, " maps deep (", origin,
        "); does an alias name a map that contains it?"));
  }
  nodes += node.IsSequence() ? 1 + node.size() : 1;
  if (nodes > kMaxFileNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file expands to more than ", kMaxFileNodes,
                     " nodes, aliases included (", origin, ")"));
  }
  switch (node.Type()) {
    case YAML::NodeType::Map:
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat("config file has a key that is not a scalar (",
                           FileOrigin(path, entry.first.Mark()), ")"));
        }
        std::string child = key.empty()
                                ? entry.first.Scalar()
                                : absl::StrCat(key, ".", entry.first.Scalar());
        absl::Status status =
            Flatten(entry.second, child, entry.first.Mark(), path, depth + 1,
                    nodes, out);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    case YAML::NodeType::Sequence: {
      std::vector<std::string> items;
      for (const auto& item : node) {
        if (item.IsNull()) continue;
        if (!item.IsScalar()) {
          if (absl::Status status = Resolve(key, origin).status();
              !status.ok()) {
            return status;
          }
          return absl::InvalidArgumentError(
              absl::StrCat("invalid value for ", key, " (", origin,
                           "): list items must be scalars"));
        }
        items.push_back(item.Scalar());
      }
      out.push_back({key, "", std::move(items), origin});
      return absl::OkStatus();
    }
    case YAML::NodeType::Scalar:
      out.push_back({key, node.Scalar(), std::nullopt, origin});
      return absl::OkStatus();
    case YAML::NodeType::Null:
      // An empty section ("kafka:" with nothing under it) sets nothing.
      if (key.empty() || IsSection(key)) return absl::OkStatus();
      out.push_back({key, "", std::nullopt, origin});
      return absl::OkStatus();
    case YAML::NodeType::Undefined:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status ReadFile(const std::string& path, absl::string_view named_by,
                      std::string& contents) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot open config file ", path, " (", named_by,
                            ")"));
  }
  char buffer[16384];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    contents.append(buffer, n);
  }
  int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) {
    return absl::ErrnoToStatus(
        error, absl::StrCat("cannot read config file ", path, " (", named_by,
                            ")"));
  }
  return absl::OkStatus();
}

absl::Status ParseFile(const std::string& path, absl::string_view named_by,
                       std::vector<Setting>& settings) {
  std::string contents;
  if (absl::Status status = ReadFile(path, named_by, contents); !status.ok()) {
    return status;
  }
  std::vector<Setting> file_settings;
  try {
    YAML::Node root = YAML::Load(contents);
    if (root.IsNull()) return absl::OkStatus();
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path,
                       " must hold a map of keys at the top level (",
                       FileOrigin(path, root.Mark()), ")"));
    }
    size_t nodes = 0;
    absl::Status status = Flatten(root, "", YAML::Mark::null_mark(), path, 0,
                                  nodes, file_settings);
    if (!status.ok()) return status;
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse config file ", path, ": line ",
                     e.mark.line + 1, ", column ", e.mark.column + 1, ": ",
                     e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse config file ", path, ": ", e.what()));
  }
  std::map<std::string, const Setting*> seen;
  for (const Setting& setting : file_settings) {
    auto [it, inserted] = seen.emplace(setting.key, &setting);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key ", Quoted(setting.key), " is set more than once (",
          it->second->origin, "; ", setting.origin, ")"));
    }
  }
  settings.insert(settings.end(), file_settings.begin(), file_settings.end());
  return absl::OkStatus();
}

std::string DefaultSource() {
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return "//eventbus/localhost";
  }
  return absl::StrCat("//eventbus/", host);
}

// Appends `text` to `out` as lines of at most `width` columns (longer words
// stay whole), each starting with `indent`.
void AppendWrapped(absl::string_view text, absl::string_view indent,
                   size_t width, std::string& out) {
  std::string line(indent);
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, line, "\n");
      line = std::string(indent);
    }
    absl::StrAppend(&line, line.size() > indent.size() ? " " : "", word);
  }
  if (line.size() > indent.size()) absl::StrAppend(&out, line, "\n");
}

}  // namespace

absl::StatusOr<Config> LoadConfig(
    const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env) {
  std::vector<Setting> file_settings;
  std::vector<Setting> env_settings;
  std::vector<Setting> flag_settings;
  std::optional<std::string> flag_config;
  std::optional<std::string> env_config;
  if (absl::Status s = ParseFlags(args, flag_settings, flag_config); !s.ok()) {
    return s;
  }
  if (absl::Status s = ParseEnvironment(env, env_settings, env_config);
      !s.ok()) {
    return s;
  }
  if (flag_config) {
    absl::Status s = ParseFile(*flag_config, "flag --config", file_settings);
    if (!s.ok()) return s;
  } else if (env_config) {
    absl::Status s = ParseFile(
        *env_config, "environment variable EVENTBUS_CONFIG", file_settings);
    if (!s.ok()) return s;
  }

  Config config;
  for (const std::vector<Setting>* settings :
       {&file_settings, &env_settings, &flag_settings}) {
    for (const Setting& setting : *settings) {
      if (absl::Status s = Apply(setting, config); !s.ok()) return s;
    }
  }
  if (config.source.empty()) config.source = DefaultSource();
  if (absl::Status s = CheckTogether(config); !s.ok()) return s;
  return config;
}

std::vector<std::string> TlsListenAddresses(const Config& config) {
  if (config.tls_cert_file.empty()) return {};
  if (!config.tls_listen.empty()) return config.tls_listen;
  std::vector<std::string> out;
  for (const std::string& address : config.listen) {
    if (IsTcpAddress(address)) out.push_back(address);
  }
  return out;
}

unsigned UnixSocketMode(const Config& config) {
  return static_cast<unsigned>(std::stoul(config.unix_socket_mode, nullptr, 8));
}

std::string ConfigHelp() {
  std::string help =
      "Usage: eventbus-sidecar [--config PATH] [--KEY=VALUE | --KEY VALUE]...\n"
      "\n"
      "Each key is set by, highest precedence first:\n"
      "  1. a flag: --kafka.brokers=b1:9092,b2:9092 or --kafka.brokers"
      " b1:9092\n"
      "  2. an environment variable: EVENTBUS_ + the key upper-cased, dots as\n"
      "     underscores (EVENTBUS_KAFKA_BROKERS=b1:9092); librdkafka"
      " properties\n"
      "     as EVENTBUS_KAFKA_PRODUCER_LINGER_MS=5 (underscores become dots)\n"
      "  3. the YAML file named by --config PATH or EVENTBUS_CONFIG; nested"
      " maps\n"
      "     join with dots, so \"kafka: {brokers: b1:9092}\" and\n"
      "     \"kafka.brokers: b1:9092\" set the same key\n"
      "  4. the default.\n"
      "Lists are comma-separated (or YAML sequences in the file). Durations"
      " look\n"
      "like 10s, 500ms or 1m30s; a bare integer is milliseconds. An unknown"
      " key\n"
      "or an invalid value from any source is an error. The variables\n"
      "Kubernetes sets for a Service named eventbus (EVENTBUS_SERVICE_HOST,\n"
      "EVENTBUS_SERVICE_PORT*, EVENTBUS_PORT*) are ignored.\n"
      "\n"
      "Keys:\n";
  for (const KeySpec& spec : kKeys) {
    bool pass_through = spec.kind == Kind::kProperties;
    std::string key =
        pass_through ? absl::StrCat(spec.key, ".<property>") : spec.key;
    std::string env = pass_through
                          ? absl::StrCat(EnvName(spec.key), "_<PROPERTY>")
                          : EnvName(spec.key);
    absl::StrAppend(&help, "  ", key, " (default: ", spec.default_text, ")\n");
    AppendWrapped(spec.help, "      ", 80, help);
    AppendWrapped(absl::StrCat("flag --", key, "=VALUE, environment ", env),
                  "      ", 80, help);
  }
  return help;
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    absl::string_view text = *entry;
    size_t eq = text.find('=');
    if (eq == absl::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, eq)),
                std::string(text.substr(eq + 1)));
  }
  return env;
}

}  // namespace eventbus::server
