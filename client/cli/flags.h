#pragma once

// The `eventbus` command line's flag parser and its conventions for exit
// codes and usage errors, shared by every command.

#include <cstddef>
#include <initializer_list>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace eventbus::cli {

// Exit codes of every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // an event, the stream or the call failed
inline constexpr int kExitUsage = 2;   // the command line is wrong

struct FlagSpec {
  bool takes_value;
  bool repeatable;
};

struct ParsedFlags {
  // Every value of each flag given, in command-line order ("" for a flag
  // that takes no value).
  std::map<std::string, std::vector<std::string>> values;
  // The arguments that are not flags (e.g. a topic name), in order.
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  // The last value of `name`; "" when it was not given.
  std::string Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? "" : it->second.back();
  }
  // Every value of `name`; empty when it was not given.
  const std::vector<std::string>& GetAll(const std::string& name) const;
};

// Parses `--name value` and `--name=value` against `specs`, and up to
// `max_positional` other arguments into ParsedFlags::positional. With
// positionals allowed, "--" ends the flags: every argument after it is a
// positional (for a topic whose name starts with "--"). The error
// (INVALID_ARGUMENT) names the bad flag, or the first argument beyond
// `max_positional` ("unexpected argument 'x'"). Whether enough positionals
// were given is the caller's to check.
absl::StatusOr<ParsedFlags> ParseFlags(
    const std::vector<std::string>& args,
    const std::map<std::string, FlagSpec>& specs, size_t max_positional = 0);

// INVALID_ARGUMENT "flag --NAME is required" for the first of `names` that
// was not given or given empty.
absl::Status Require(const ParsedFlags& flags,
                     std::initializer_list<const char*> names);

// Prints "eventbus COMMAND: MESSAGE\nRun 'eventbus HELP_COMMAND --help' for
// usage.\n" to `err` and returns kExitUsage. `command` is what was run
// ("publish", "topics create"), `help_command` whose --help explains it
// ("publish", "topics").
int UsageError(std::ostream& err, absl::string_view command,
               absl::string_view help_command, absl::string_view message);

}  // namespace eventbus::cli
