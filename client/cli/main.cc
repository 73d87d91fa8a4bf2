// eventbus: publish and receive events through an eventbus sidecar from
// the command line. See client/cli/README.md.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/admin_commands.h"
#include "client/cli/connection.h"
#include "client/cli/delivery_json.h"
#include "client/cli/flags.h"
#include "client/cli/latency_histogram.h"
#include "client/cpp/publisher.h"
#include "client/cpp/subscriber.h"
#include "common/json_text.h"

namespace eventbus::cli {

using ::eventbus::common::AppendJsonString;
using ::eventbus::common::IsStrictJson;
using ::eventbus::common::IsValidUtf8;
namespace {

constexpr char kMainUsage[] = R"(eventbus: publish and receive CloudEvents through an eventbus sidecar, and
manage Kafka topics and consumer groups through its Admin API.

Usage:
  eventbus publish   --address ADDR --topic T --type TYPE [flags]
  eventbus subscribe --address ADDR --topic T --group G [flags]
  eventbus topics    SUBCOMMAND [TOPIC] --address ADDR [flags]
  eventbus groups    SUBCOMMAND [GROUP] --address ADDR [flags]
  eventbus COMMAND --help

topics subcommands: list, describe, create, delete.
groups subcommands: list, describe, reset.

ADDR is host:port (e.g. localhost:50051) or unix:/path/to/socket.
Exit codes: 0 success, 1 an event, the stream or the call failed, 2 usage
error.
)";

constexpr char kPublishUsage[] = R"(Usage: eventbus publish --address ADDR --topic T --type TYPE [flags]

Publishes events, pipelined over one PublishStream. With --data, publishes
that payload (--count times); without it, each line of standard input is one
event's data (empty lines are skipped).

Flags:
)" EVENTBUS_CLI_CONNECTION_FLAGS R"(  --topic T               Kafka topic (required)
  --type TYPE             CloudEvents type, e.g. com.example.order.created (required)
  --key K                 partition key
  --data D                the payload; otherwise one event per stdin line
  --source S              CloudEvents source (default: the sidecar's)
  --subject S             CloudEvents subject
  --content-type CT       data content type (default application/json with
                          --json, else text/plain)
  --extension NAME=VALUE  an extension attribute; repeatable
  --json                  each payload must be valid JSON
  --count N               with --data: publish it N times (default 1)
  --rate R                at most R events per second (default 0: no limit)
  --help                  this text

Failed events are reported on stderr, one line each; a summary (events,
errors, events/s, latency p50/p99) follows at the end. Exit 0 when every
event was published, 1 when any failed, 2 for a usage error.
)";

constexpr char kSubscribeUsage[] = R"(Usage: eventbus subscribe --address ADDR --topic T --group G [flags]

Receives events as a member of consumer group G and prints each one as a
JSON line on stdout, then acks it. Ctrl-C or SIGTERM stops cleanly.

Flags:
)" EVENTBUS_CLI_CONNECTION_FLAGS R"(  --topic T               topic to receive from; repeatable (at least one)
  --group G               consumer group (required)
  --from earliest|latest  where a group without committed offsets starts
                          (default latest)
  --count N               exit 0 after N deliveries (printed and acked)
  --raw                   print only each event's data bytes and a newline
  --max-outstanding N     unacked deliveries at most (default: the sidecar's)
  --help                  this text

Output line: {"delivery_id","topic","partition","offset","key","attempt",
"event":{"id","source","type","spec_version","subject","time",
"data_content_type","data" (or "data_base64" when not UTF-8),"extensions"}}
)";

int UsageError(const std::string& command, absl::string_view message) {
  return ::eventbus::cli::UsageError(std::cerr, command, command, message);
}

// --- publish -----------------------------------------------------------------

struct PublishStats {
  std::atomic<int64_t> handed{0};
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  LatencyHistogram latency;
};

class ErrorLog {
 public:
  explicit ErrorLog(bool progress) : progress_(progress) {}
  // Prints `line` on stderr, clearing a progress line first.
  void Print(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (progress_) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  void Progress(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
  }

 private:
  std::mutex mu_;
  const bool progress_;
};

int RunPublish(const std::vector<std::string>& args) {
  std::map<std::string, FlagSpec> specs = {
      {"topic", {true, false}},
      {"type", {true, false}},         {"key", {true, false}},
      {"data", {true, false}},         {"source", {true, false}},
      {"subject", {true, false}},      {"content-type", {true, false}},
      {"extension", {true, true}},     {"json", {false, false}},
      {"count", {true, false}},        {"rate", {true, false}},
      {"help", {false, false}},
  };
  AddConnectionFlags(specs);
  absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, specs);
  if (!parsed.ok()) return UsageError("publish", parsed.status().message());
  const ParsedFlags& flags = *parsed;
  if (flags.Has("help")) {
    std::fputs(kPublishUsage, stdout);
    return kExitOk;
  }
  if (absl::Status s = Require(flags, {"address", "topic", "type"}); !s.ok()) {
    return UsageError("publish", s.message());
  }
  const bool json = flags.Has("json");
  int64_t count = 1;
  if (flags.Has("count")) {
    if (!absl::SimpleAtoi(flags.Get("count"), &count) || count < 1) {
      return UsageError("publish", absl::StrCat("flag --count: '", flags.Get("count"),
                                                "' is not a positive integer"));
    }
    if (!flags.Has("data")) {
      return UsageError("publish", "flag --count needs --data (without --data, "
                                   "each stdin line is one event)");
    }
  }
  double rate = 0;
  if (flags.Has("rate") &&
      (!absl::SimpleAtod(flags.Get("rate"), &rate) || rate < 0)) {
    return UsageError("publish", absl::StrCat("flag --rate: '", flags.Get("rate"),
                                              "' is not a number >= 0"));
  }
  if (flags.Has("data") && json && !IsStrictJson(flags.Get("data"))) {
    return UsageError("publish", "flag --data is not valid JSON (--json)");
  }

  v1::PublishRequest base;
  base.set_topic(flags.Get("topic"));
  base.set_key(flags.Get("key"));
  v1::Event* event = base.mutable_event();
  event->set_type(flags.Get("type"));
  event->set_source(flags.Get("source"));
  event->set_subject(flags.Get("subject"));
  event->set_data_content_type(flags.Has("content-type") ? flags.Get("content-type")
                               : json                    ? "application/json"
                                                         : "text/plain");
  if (auto it = flags.values.find("extension"); it != flags.values.end()) {
    for (const std::string& ext : it->second) {
      const size_t eq = ext.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError("publish", absl::StrCat("flag --extension: '", ext,
                                                  "' is not NAME=VALUE"));
      }
      (*event->mutable_extensions())[ext.substr(0, eq)] = ext.substr(eq + 1);
    }
  }

  const bool progress = isatty(STDERR_FILENO);
  ErrorLog log(progress);
  PublishStats stats;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Connect(flags);
  if (!channel.ok()) return UsageError("publish", channel.status().message());
  client::Publisher publisher(*channel);
  const absl::Time start = absl::Now();

  std::atomic<bool> finished{false};
  std::thread progress_thread;
  if (progress) {
    progress_thread = std::thread([&] {
      while (!finished.load()) {
        absl::SleepFor(absl::Milliseconds(200));
        const double secs = absl::ToDoubleSeconds(absl::Now() - start);
        const int64_t done = stats.ok + stats.failed;
        log.Progress(absl::StrFormat(
            "%d published, %d errors, %d in flight, %.0f events/s",
            stats.ok.load(), stats.failed.load(), stats.handed - done,
            secs > 0 ? done / secs : 0.0));
      }
    });
  }

  int64_t sequence = 0;
  auto publish = [&](std::string data) {
    const int64_t n = ++sequence;
    if (rate > 0) {
      const absl::Time due = start + absl::Seconds((n - 1) / rate);
      const absl::Time now = absl::Now();
      if (due > now) absl::SleepFor(due - now);
    }
    v1::PublishRequest request = base;
    request.mutable_event()->set_data(std::move(data));
    const absl::Time handed_in = absl::Now();
    ++stats.handed;
    publisher.PublishAsync(
        std::move(request),
        [&stats, &log, handed_in, n](absl::StatusOr<client::PublishResult> r) {
          stats.latency.Record(absl::Now() - handed_in);
          if (r.ok()) {
            ++stats.ok;
          } else {
            ++stats.failed;
            log.Print(absl::StrCat("event ", n, ": ", r.status().ToString()));
          }
        });
  };

  if (flags.Has("data")) {
    for (int64_t i = 0; i < count; ++i) publish(flags.Get("data"));
  } else {
    std::string line;
    int64_t line_number = 0;
    while (std::getline(std::cin, line)) {
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      if (json && !IsStrictJson(line)) {
        ++sequence;
        ++stats.failed;
        log.Print(absl::StrCat("line ", line_number,
                               ": not valid JSON (--json); not published"));
        continue;
      }
      publish(std::move(line));
    }
  }

  const absl::Status closed = publisher.Close();
  finished = true;
  if (progress_thread.joinable()) progress_thread.join();
  if (progress) std::fputs("\r\033[K", stderr);
  if (!closed.ok()) {
    std::fprintf(stderr, "eventbus publish: the stream ended with %s\n",
                 closed.ToString().c_str());
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t events = stats.ok + stats.failed;
  std::fprintf(
      stderr,
      "%s\n",
      absl::StrFormat("published %d events, %d errors in %.2f s (%.0f events/s); "
                      "latency p50 %.2f ms, p99 %.2f ms",
                      events, stats.failed.load(), secs,
                      secs > 0 ? events / secs : 0.0,
                      absl::ToDoubleMilliseconds(stats.latency.Percentile(0.5)),
                      absl::ToDoubleMilliseconds(stats.latency.Percentile(0.99)))
          .c_str());
  return stats.failed > 0 || !closed.ok() ? kExitFailed : kExitOk;
}

// --- subscribe ---------------------------------------------------------------

int RunSubscribe(const std::vector<std::string>& args) {
  std::map<std::string, FlagSpec> specs = {
      {"topic", {true, true}},
      {"group", {true, false}},   {"from", {true, false}},
      {"count", {true, false}},   {"raw", {false, false}},
      {"max-outstanding", {true, false}}, {"help", {false, false}},
  };
  AddConnectionFlags(specs);
  absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, specs);
  if (!parsed.ok()) return UsageError("subscribe", parsed.status().message());
  const ParsedFlags& flags = *parsed;
  if (flags.Has("help")) {
    std::fputs(kSubscribeUsage, stdout);
    return kExitOk;
  }
  if (absl::Status s = Require(flags, {"address", "topic", "group"}); !s.ok()) {
    return UsageError("subscribe", s.message());
  }
  client::SubscriberOptions options;
  options.topics = flags.values.at("topic");
  options.group = flags.Get("group");
  if (flags.Has("from")) {
    const std::string from = flags.Get("from");
    if (from == "earliest") {
      options.start = v1::START_POSITION_EARLIEST;
    } else if (from != "latest") {
      return UsageError("subscribe", absl::StrCat("flag --from: '", from,
                                                  "' is not earliest or latest"));
    }
  }
  int64_t count = 0;
  if (flags.Has("count") &&
      (!absl::SimpleAtoi(flags.Get("count"), &count) || count < 1)) {
    return UsageError("subscribe", absl::StrCat("flag --count: '", flags.Get("count"),
                                                "' is not a positive integer"));
  }
  if (flags.Has("max-outstanding") &&
      (!absl::SimpleAtoi(flags.Get("max-outstanding"),
                         &options.max_outstanding_messages) ||
       options.max_outstanding_messages < 1)) {
    return UsageError("subscribe",
                      absl::StrCat("flag --max-outstanding: '",
                                   flags.Get("max-outstanding"),
                                   "' is not a positive integer"));
  }
  const bool raw = flags.Has("raw");

  // SIGINT and SIGTERM go to one thread (blocked everywhere else, including
  // gRPC's threads, which inherit this mask), which stops the subscriber.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Connect(flags);
  if (!channel.ok()) return UsageError("subscribe", channel.status().message());
  client::Subscriber subscriber(*channel, options);
  std::atomic<bool> finished{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 100 * 1000 * 1000};
    while (!finished.load()) {
      if (sigtimedwait(&signals, nullptr, &tick) > 0) subscriber.Stop();
    }
  });

  int64_t printed = 0;
  // A delivery is acked only once it is on standard output: when writing
  // fails (a full disk, a closed pipe) it and the rest are nacked, go back
  // to the group, and the command fails.
  std::string output_error;  // set once, by the one worker
  absl::Status status = subscriber.Run([&](const v1::Delivery& d) {
    if (!output_error.empty()) return absl::DataLossError(output_error);
    std::string line =
        raw ? d.event().data() : DeliveryToJson(d);
    line.push_back('\n');
    errno = 0;
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() ||
        std::fflush(stdout) != 0) {
      output_error = absl::StrCat("cannot write to standard output: ",
                                  errno != 0 ? std::strerror(errno) : "error");
      std::clearerr(stdout);
      subscriber.Stop();
      return absl::DataLossError(output_error);
    }
    if (count > 0 && ++printed >= count) subscriber.Stop();
    return absl::OkStatus();
  });
  finished = true;
  signal_thread.join();
  if (!output_error.empty()) {
    std::fprintf(stderr,
                 "eventbus subscribe: %s; the deliveries not written were not "
                 "acked and go back to the group\n",
                 output_error.c_str());
    return kExitFailed;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "eventbus subscribe: the stream ended with %s\n",
                 status.ToString().c_str());
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace
}  // namespace eventbus::cli

int main(int argc, char** argv) {
  using namespace eventbus::cli;
  // The client library's warnings go to stderr: stdout carries the events.
  spdlog::set_default_logger(spdlog::stderr_color_mt("eventbus"));
  if (argc < 2) {
    std::fputs(kMainUsage, stderr);
    return kExitUsage;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kMainUsage, stdout);
    return kExitOk;
  }
  if (command == "publish") return RunPublish(args);
  if (command == "subscribe") return RunSubscribe(args);
  if (command == "topics") return RunTopics(args, std::cout, std::cerr);
  if (command == "groups") return RunGroups(args, std::cout, std::cerr);
  std::fprintf(stderr,
               "eventbus: unknown command '%s' (publish, subscribe, topics or "
               "groups)\n"
               "Run 'eventbus --help' for usage.\n",
               command.c_str());
  return kExitUsage;
}
