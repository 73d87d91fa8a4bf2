#include "server/logging.h"

#include <chrono>
#include <ctime>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/json_text.h"
#include "spdlog/formatter.h"
#include "spdlog/logger.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace eventbus::server {

using ::eventbus::common::AppendJsonEscaped;

namespace {

constexpr char kTextPattern[] = "[%Y-%m-%dT%H:%M:%S.%e%z] [%l] %v";

struct LevelName {
  absl::string_view name;
  spdlog::level::level_enum level;
};

constexpr LevelName kLevels[] = {
    {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
    {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
    {"off", spdlog::level::off},
};

absl::StatusOr<spdlog::level::level_enum> ParseLevel(absl::string_view level) {
  for (const LevelName& entry : kLevels) {
    if (entry.name == level) return entry.level;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid log level \"", absl::CHexEscape(level),
      "\": must be one of trace, debug, info, warn, error, critical, off"));
}

absl::string_view NameOf(spdlog::level::level_enum level) {
  for (const LevelName& entry : kLevels) {
    if (entry.level == level) return entry.name;
  }
  return "unknown";
}

void Append(absl::string_view text, spdlog::memory_buf_t& dest) {
  dest.append(text.data(), text.data() + text.size());
}

// Appends `text` as the inside of a JSON string (common::AppendJsonEscaped).
void AppendEscaped(spdlog::string_view_t text, spdlog::memory_buf_t& dest) {
  std::string escaped;
  AppendJsonEscaped(absl::string_view(text.data(), text.size()), &escaped);
  Append(escaped, dest);
}

// Formats each message as one line holding a JSON object:
// {"time":"<UTC RFC 3339, ms>","level":"...","logger":"...","msg":"..."}.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    auto since_epoch = msg.time.time_since_epoch();
    seconds whole = std::chrono::floor<seconds>(since_epoch);
    auto millis =
        std::chrono::duration_cast<milliseconds>(since_epoch - whole).count();
    std::time_t time = static_cast<std::time_t>(whole.count());
    std::tm utc{};
    gmtime_r(&time, &utc);
    fmt::format_to(std::back_inserter(dest),
                   "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\","
                   "\"level\":\"",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                   utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
    Append(NameOf(msg.level), dest);
    Append("\",\"logger\":\"", dest);
    AppendEscaped(msg.logger_name, dest);
    Append("\",\"msg\":\"", dest);
    AppendEscaped(msg.payload, dest);
    Append("\"}\n", dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

absl::StatusOr<std::unique_ptr<spdlog::formatter>> MakeFormatter(
    absl::string_view format) {
  if (format == "text") {
    return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
  }
  if (format == "json") return std::make_unique<JsonFormatter>();
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid log format \"", absl::CHexEscape(format),
      "\": must be text or json"));
}

}  // namespace

absl::Status ConfigureLogger(spdlog::logger& logger, absl::string_view level,
                             absl::string_view format) {
  absl::StatusOr<spdlog::level::level_enum> parsed_level = ParseLevel(level);
  if (!parsed_level.ok()) return parsed_level.status();
  absl::StatusOr<std::unique_ptr<spdlog::formatter>> formatter =
      MakeFormatter(format);
  if (!formatter.ok()) return formatter.status();
  logger.set_level(*parsed_level);
  logger.set_formatter(std::move(*formatter));
  return absl::OkStatus();
}

absl::Status ConfigureLogging(absl::string_view level,
                              absl::string_view format) {
  absl::StatusOr<spdlog::level::level_enum> parsed_level = ParseLevel(level);
  if (!parsed_level.ok()) return parsed_level.status();
  absl::StatusOr<std::unique_ptr<spdlog::formatter>> formatter =
      MakeFormatter(format);
  if (!formatter.ok()) return formatter.status();

  auto logger = std::make_shared<spdlog::logger>(
      "eventbus", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_level(*parsed_level);
  logger->set_formatter((*formatter)->clone());
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(*parsed_level);
  spdlog::set_formatter(std::move(*formatter));
  return absl::OkStatus();
}

}  // namespace eventbus::server
