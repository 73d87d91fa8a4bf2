#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spdlog {
class logger;
}  // namespace spdlog

namespace eventbus::server {

// Makes spdlog's default logger (spdlog::info(...) etc.) a logger named
// "eventbus" that writes to stderr through a thread-safe sink, and applies
// `level` and `format` to it and to every logger registered with spdlog now
// or later.
//
// level: trace, debug, info, warn, error, critical or off.
// format: "text" gives lines like
//   [2024-05-01T12:34:56.789+02:00] [info] message
// (local time); "json" gives one JSON object per line:
//   {"time":"2024-05-01T10:34:56.789Z","level":"info","logger":"eventbus",
//    "msg":"message"}
// with the time in UTC, level names as above, and the message escaped so that
// any message (quotes, control characters, invalid UTF-8) yields valid JSON.
//
// Returns InvalidArgument for any other level or format, changing nothing.
// Call it at startup, before other threads log: replacing spdlog's default
// logger is not safe while it is in use.
absl::Status ConfigureLogging(absl::string_view level,
                              absl::string_view format);

// Applies `level` and `format` (as above) to `logger` and its sinks only.
// Returns InvalidArgument for a bad level or format, changing nothing.
absl::Status ConfigureLogger(spdlog::logger& logger, absl::string_view level,
                             absl::string_view format);

}  // namespace eventbus::server
