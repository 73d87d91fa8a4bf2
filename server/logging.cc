#include "server/logging.h"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "spdlog/formatter.h"
#include "spdlog/logger.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace eventbus::server {
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

// The length of the well-formed UTF-8 sequence at the start of `p` (`n`
// bytes available), or 0 if it is not one (overlong forms and surrogates
// included).
size_t Utf8SequenceLength(const unsigned char* p, size_t n) {
  size_t length;
  uint32_t code_point;
  uint32_t smallest;
  if ((p[0] & 0xE0) == 0xC0) {
    length = 2;
    code_point = p[0] & 0x1F;
    smallest = 0x80;
  } else if ((p[0] & 0xF0) == 0xE0) {
    length = 3;
    code_point = p[0] & 0x0F;
    smallest = 0x800;
  } else if ((p[0] & 0xF8) == 0xF0) {
    length = 4;
    code_point = p[0] & 0x07;
    smallest = 0x10000;
  } else {
    return 0;
  }
  if (n < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (p[i] & 0x3F);
  }
  if (code_point < smallest || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// Appends `text` as the inside of a JSON string: quote and backslash
// escaped, control characters as \u00XX, bytes that are not UTF-8 as U+FFFD.
void AppendJsonEscaped(spdlog::string_view_t text, spdlog::memory_buf_t& dest) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      dest.push_back('\\');
      dest.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      dest.append(escaped, escaped + sizeof(escaped));
      ++i;
    } else if (c < 0x80) {
      dest.push_back(static_cast<char>(c));
      ++i;
    } else if (size_t length = Utf8SequenceLength(p + i, n - i); length > 0) {
      dest.append(text.data() + i, text.data() + i + length);
      i += length;
    } else {
      Append("\\ufffd", dest);
      ++i;
    }
  }
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
    AppendJsonEscaped(msg.logger_name, dest);
    Append("\",\"msg\":\"", dest);
    AppendJsonEscaped(msg.payload, dest);
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
