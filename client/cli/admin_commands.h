#pragma once

// `eventbus topics` and `eventbus groups`: the Admin API
// (proto/eventbus/v1/admin.proto) from the command line.

#include <ostream>
#include <string>
#include <vector>

namespace eventbus::cli {

// Runs `eventbus topics SUBCOMMAND ...`; `args` are the arguments after
// "topics". Subcommands: list, describe TOPIC, create TOPIC, delete TOPIC.
// Every one needs --address and takes --timeout (the call's deadline,
// default 30s), --json and --help. Results go to `out` (a table or a line
// of text; with --json the response as one JSON document), problems to
// `err`. Returns kExitOk, kExitFailed when the call failed ("eventbus
// topics describe: NOT_FOUND: <message>" on `err`) or kExitUsage for a bad
// command line (flags.h). Blocks for at most the deadline.
int RunTopics(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);

// The same for `eventbus groups SUBCOMMAND ...`: list, describe GROUP and
// reset GROUP --topic T (--to-earliest | --to-latest | --to-time RFC3339 |
// --to-offset N) [--partition P]... [--dry-run].
int RunGroups(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);

}  // namespace eventbus::cli
