#include "client/cli/admin_commands.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/connection.h"
#include "client/cli/flags.h"
#include "client/cli/table.h"
#include "client/cpp/channel.h"
#include "client/cpp/status.h"
#include "eventbus/v1/admin.grpc.pb.h"

namespace eventbus::cli {
namespace {

constexpr char kTopicsUsage[] = R"(Usage:
  eventbus topics list            --address ADDR [--internal] [flags]
  eventbus topics describe TOPIC  --address ADDR [--all-configs] [flags]
  eventbus topics create TOPIC    --address ADDR [--partitions N]
                                  [--replication-factor N]
                                  [--config NAME=VALUE]... [flags]
  eventbus topics delete TOPIC    --address ADDR [flags]

Lists, describes, creates and deletes Kafka topics through the sidecar's
Admin API. create and delete change the cluster: the sidecar refuses them
(PERMISSION_DENIED) unless its configuration sets admin.allow_changes: true.

Subcommands:
  list       the cluster's topics: TOPIC  PARTITIONS  REPLICATION
  describe   the topic's partitions (leader, replicas, in-sync replicas, low
             and high watermark) and the configs set on it
  create     creates the topic; prints "created topic TOPIC"
  delete     deletes the topic and its records; prints "deleted topic TOPIC"

Flags:
)" EVENTBUS_CLI_CONNECTION_FLAGS R"(  --timeout DURATION      deadline of the call, e.g. 10s or 2m (default 30s)
  --json                  print the response as one JSON document (the proto3
                          JSON mapping grpcurl prints)
  --internal              list: Kafka's internal topics too
  --all-configs           describe: every config, the defaults too
  --partitions N          create: number of partitions (default: the
                          broker's num.partitions)
  --replication-factor N  create: copies of each partition (default: the
                          broker's default.replication.factor)
  --config NAME=VALUE     create: a topic config, e.g. retention.ms=86400000;
                          repeatable
  --help                  this text

Exit codes: 0 success, 1 the call failed (its status code and message are
printed on stderr), 2 usage error.
)";

constexpr char kGroupsUsage[] = R"(Usage:
  eventbus groups list            --address ADDR [flags]
  eventbus groups describe GROUP  --address ADDR [flags]
  eventbus groups reset GROUP     --address ADDR --topic T
                                  (--to-earliest | --to-latest |
                                   --to-time TIME | --to-offset N)
                                  [--partition P]... [--dry-run] [flags]

Lists and describes Kafka consumer groups, and moves their committed offsets,
through the sidecar's Admin API.

Subcommands:
  list       the cluster's consumer groups: GROUP  STATE
  describe   the group's state and members, and per partition its committed
             offset, the end of the log, the lag and the member holding it
  reset      moves the group's committed offsets in one topic, so that its
             next member starts there. The group must have no members
             (FAILED_PRECONDITION otherwise); without --dry-run the sidecar's
             configuration must set admin.allow_changes: true.

Flags:
)" EVENTBUS_CLI_CONNECTION_FLAGS R"(  --timeout DURATION      deadline of the call, e.g. 10s or 2m (default 30s)
  --json                  print the response as one JSON document (the proto3
                          JSON mapping grpcurl prints)
  --topic T               reset: the topic whose offsets move (required)
  --partition P           reset: a partition to move; repeatable (default:
                          every partition of the topic)
  --to-earliest           reset: to the oldest record still kept
  --to-latest             reset: to the end of the log, skipping everything
  --to-time TIME          reset: to the first record at or after TIME, an
                          RFC 3339 time such as 2025-01-01T12:00:00Z
  --to-offset N           reset: to offset N, brought within the partition's
                          low and high watermark
  --dry-run               reset: print the new offsets but commit nothing
  --help                  this text

reset takes exactly one --to-* flag.
Exit codes: 0 success, 1 the call failed (its status code and message are
printed on stderr), 2 usage error.
)";

using FlagSpecs = std::map<std::string, FlagSpec>;

constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);

// "-" for what is empty or unknown, so that every table cell holds a word.
std::string OrDash(absl::string_view s) {
  return s.empty() ? "-" : std::string(s);
}

// An offset or lag where -1 means "none" (as kafka-consumer-groups.sh
// shows it).
std::string OffsetOrDash(int64_t offset) {
  return offset < 0 ? "-" : absl::StrCat(offset);
}

// One run of an admin subcommand: its parsed command line, where its output
// goes, and its call to the sidecar.
class Subcommand {
 public:
  // `group` is "topics" or "groups", `name` the subcommand ("describe");
  // `usage` is printed for --help.
  Subcommand(absl::string_view group, absl::string_view name,
             const char* usage, std::ostream& out, std::ostream& err)
      : group_(group),
        command_(absl::StrCat(group, " ", name)),
        usage_(usage),
        out_(out),
        err_(err) {}

  // Parses `args` (those after the subcommand's name) against the flags
  // every admin subcommand takes (--address, --timeout, --json, --help) and
  // `extra`. `positional` names the one argument the subcommand takes
  // ("TOPIC"), or is null when it takes none. Returns nullopt when the
  // subcommand can go on; otherwise the exit code, after printing the usage
  // (--help) or a usage error.
  std::optional<int> Parse(const std::vector<std::string>& args,
                           FlagSpecs extra, const char* positional) {
    AddConnectionFlags(extra);
    extra.insert({
                  {"timeout", {true, false}},
                  {"json", {false, false}},
                  {"help", {false, false}}});
    absl::StatusOr<ParsedFlags> parsed =
        ParseFlags(args, extra, positional != nullptr ? 1 : 0);
    if (!parsed.ok()) return Usage(parsed.status().message());
    flags_ = *std::move(parsed);
    if (flags_.Has("help")) {
      out_ << usage_;
      out_.flush();
      return kExitOk;
    }
    if (positional != nullptr) {
      if (flags_.positional.empty() || flags_.positional[0].empty()) {
        return Usage(absl::StrCat(positional, " is required"));
      }
      name_ = flags_.positional[0];
    }
    if (absl::Status s = Require(flags_, {"address"}); !s.ok()) {
      return Usage(s.message());
    }
    if (flags_.Has("timeout")) {
      const std::string text = flags_.Get("timeout");
      if (!absl::ParseDuration(text, &timeout_) ||
          timeout_ <= absl::ZeroDuration() ||
          timeout_ == absl::InfiniteDuration()) {
        return Usage(absl::StrCat("flag --timeout: '", text,
                                  "' is not a positive duration (e.g. 10s, "
                                  "2m)"));
      }
    }
    return std::nullopt;
  }

  const ParsedFlags& flags() const { return flags_; }
  // The topic or group the subcommand names; "" when it takes none.
  const std::string& name() const { return name_; }

  int Usage(absl::string_view message) const {
    return UsageError(err_, command_, group_, message);
  }

  // Calls `method` with `request` under the --timeout deadline. On success
  // prints the response, as JSON with --json and otherwise with
  // `print(response, out)`, and returns kExitOk; on failure prints the
  // status and returns kExitFailed.
  template <typename Request, typename Response, typename Print>
  int Call(grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*,
                                                   const Request&, Response*),
           const Request& request, Print print) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Connect(flags_);
    if (!channel.ok()) return Usage(channel.status().message());
    std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    Response response;
    const absl::Status status =
        client::FromGrpcStatus(((*stub).*method)(&context, request, &response));
    if (!status.ok()) {
      err_ << "eventbus " << command_ << ": "
           << absl::StatusCodeToString(status.code()) << ": "
           << status.message() << "\n";
      err_.flush();
      return kExitFailed;
    }
    if (flags_.Has("json")) {
      if (!PrintJson(response)) return kExitFailed;
    } else {
      print(response, out_);
    }
    out_.flush();
    if (!out_.good()) {
      // The call took effect; say so, since the output that would have
      // said it is lost.
      err_ << "eventbus " << command_
           << ": the call succeeded, but writing its output failed\n";
      return kExitFailed;
    }
    return kExitOk;
  }

 private:
  bool PrintJson(const google::protobuf::Message& message) {
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.always_print_primitive_fields = true;
    options.preserve_proto_field_names = true;
    std::string json;
    if (auto s = google::protobuf::util::MessageToJsonString(message, &json,
                                                             options);
        !s.ok()) {
      err_ << "eventbus " << command_
           << ": cannot print the response as JSON: " << s.message() << "\n";
      return false;
    }
    if (json.empty() || json.back() != '\n') json.push_back('\n');
    out_ << json;
    return true;
  }

  const std::string group_;
  const std::string command_;
  const char* const usage_;
  std::ostream& out_;
  std::ostream& err_;
  ParsedFlags flags_;
  std::string name_;
  absl::Duration timeout_ = kDefaultTimeout;
};

// Parses `text`, the value of --`flag`, into `out`. Returns nullopt when
// it is an integer >= `min`, else the usage error "flag --FLAG: 'TEXT' is
// not WHAT".
template <typename Int>
std::optional<std::string> ParseInt(const std::string& text,
                                    absl::string_view flag, Int min,
                                    absl::string_view what, Int* out) {
  if (absl::SimpleAtoi(text, out) && *out >= min) return std::nullopt;
  return absl::StrCat("flag --", flag, ": '", text, "' is not ", what);
}

// --- topics ------------------------------------------------------------------

int TopicsList(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args, {{"internal", {false, false}}}, nullptr)) {
    return *done;
  }
  v1::ListTopicsRequest request;
  request.set_include_internal(cmd.flags().Has("internal"));
  return cmd.Call(&v1::Admin::Stub::ListTopics, request,
                  [](const v1::ListTopicsResponse& r, std::ostream& out) {
                    Table table({"TOPIC", "PARTITIONS", "REPLICATION"});
                    for (const v1::TopicSummary& t : r.topics()) {
                      table.AddRow({t.name(), absl::StrCat(t.partitions()),
                                    absl::StrCat(t.replication_factor())});
                    }
                    out << table.Render();
                  });
}

int TopicsDescribe(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args, {{"all-configs", {false, false}}}, "TOPIC")) {
    return *done;
  }
  v1::DescribeTopicRequest request;
  request.set_topic(cmd.name());
  const bool all_configs = cmd.flags().Has("all-configs");
  return cmd.Call(
      &v1::Admin::Stub::DescribeTopic, request,
      [all_configs](const v1::TopicDescription& r, std::ostream& out) {
        out << "Topic: " << r.name() << "  id: " << OrDash(r.topic_id())
            << "  partitions: " << r.partitions_size() << "\n\n";
        Table partitions({"PARTITION", "LEADER", "REPLICAS", "ISR", "LOW",
                          "HIGH"});
        for (const v1::TopicPartitionDescription& p : r.partitions()) {
          partitions.AddRow(
              {absl::StrCat(p.partition()),
               p.leader() < 0 ? "none" : absl::StrCat(p.leader()),
               OrDash(absl::StrJoin(p.replicas(), ",")),
               OrDash(absl::StrJoin(p.isr(), ",")),
               absl::StrCat(p.low_watermark()),
               absl::StrCat(p.high_watermark())});
        }
        out << partitions.Render() << "\n";
        Table configs({"CONFIG", "VALUE", "SOURCE"});
        for (const v1::TopicConfig& c : r.configs()) {
          if (c.is_default() && !all_configs) continue;
          configs.AddRow({c.name(), c.sensitive() ? "(sensitive)" : c.value(),
                          c.source()});
        }
        if (configs.rows() == 0 && !all_configs) {
          out << "no configs set on the topic\n";
        } else {
          out << configs.Render();
        }
      });
}

int TopicsCreate(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args,
                            {{"partitions", {true, false}},
                             {"replication-factor", {true, false}},
                             {"config", {true, true}}},
                            "TOPIC")) {
    return *done;
  }
  const ParsedFlags& flags = cmd.flags();
  v1::CreateTopicRequest request;
  request.set_topic(cmd.name());
  for (const char* flag : {"partitions", "replication-factor"}) {
    if (!flags.Has(flag)) continue;
    int32_t n = 0;
    if (auto problem = ParseInt<int32_t>(flags.Get(flag), flag, 1,
                                         "a positive integer", &n)) {
      return cmd.Usage(*problem);
    }
    if (absl::string_view(flag) == "partitions") {
      request.set_partitions(n);
    } else {
      request.set_replication_factor(n);
    }
  }
  for (const std::string& config : flags.GetAll("config")) {
    const size_t eq = config.find('=');
    if (eq == std::string::npos || eq == 0) {
      return cmd.Usage(
          absl::StrCat("flag --config: '", config, "' is not NAME=VALUE"));
    }
    const std::string name = config.substr(0, eq);
    if (!request.mutable_configs()->insert({name, config.substr(eq + 1)})
             .second) {
      return cmd.Usage(
          absl::StrCat("flag --config: '", name, "' is given twice"));
    }
  }
  const std::string topic = cmd.name();
  return cmd.Call(&v1::Admin::Stub::CreateTopic, request,
                  [&topic](const v1::CreateTopicResponse&, std::ostream& out) {
                    out << "created topic " << topic << "\n";
                  });
}

int TopicsDelete(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args, {}, "TOPIC")) return *done;
  v1::DeleteTopicRequest request;
  request.set_topic(cmd.name());
  const std::string topic = cmd.name();
  return cmd.Call(&v1::Admin::Stub::DeleteTopic, request,
                  [&topic](const v1::DeleteTopicResponse&, std::ostream& out) {
                    out << "deleted topic " << topic << "\n";
                  });
}

// --- groups ------------------------------------------------------------------

int GroupsList(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args, {}, nullptr)) return *done;
  return cmd.Call(&v1::Admin::Stub::ListGroups, v1::ListGroupsRequest(),
                  [](const v1::ListGroupsResponse& r, std::ostream& out) {
                    Table table({"GROUP", "STATE"});
                    for (const v1::GroupSummary& g : r.groups()) {
                      table.AddRow({g.group_id(), OrDash(g.state())});
                    }
                    out << table.Render();
                  });
}

int GroupsDescribe(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args, {}, "GROUP")) return *done;
  v1::DescribeGroupRequest request;
  request.set_group_id(cmd.name());
  return cmd.Call(
      &v1::Admin::Stub::DescribeGroup, request,
      [](const v1::GroupDescription& r, std::ostream& out) {
        out << "Group: " << r.group_id() << "  state: " << OrDash(r.state())
            << "  assignor: " << OrDash(r.partition_assignor())
            << "  coordinator: " << r.coordinator()
            << "  members: " << r.members_size() << "\n\n";
        Table offsets({"TOPIC", "PARTITION", "COMMITTED", "END", "LAG",
                       "MEMBER"});
        for (const v1::GroupPartitionOffset& o : r.offsets()) {
          offsets.AddRow({o.topic(), absl::StrCat(o.partition()),
                          OffsetOrDash(o.committed_offset()),
                          absl::StrCat(o.high_watermark()),
                          OffsetOrDash(o.lag()), OrDash(o.member_id())});
        }
        out << offsets.Render() << "Total lag: " << r.total_lag() << "\n";
        if (r.members_size() == 0) return;
        Table members({"MEMBER", "CLIENT", "HOST", "PARTITIONS"});
        for (const v1::GroupMember& m : r.members()) {
          std::vector<std::string> assignment;
          for (const v1::GroupTopicPartition& tp : m.assignment()) {
            assignment.push_back(absl::StrCat(tp.topic(), ":", tp.partition()));
          }
          members.AddRow({m.member_id(), OrDash(m.client_id()),
                          OrDash(m.host()),
                          OrDash(absl::StrJoin(assignment, ","))});
        }
        out << "\n" << members.Render();
      });
}

int GroupsReset(Subcommand& cmd, const std::vector<std::string>& args) {
  if (auto done = cmd.Parse(args,
                            {{"topic", {true, false}},
                             {"partition", {true, true}},
                             {"to-earliest", {false, false}},
                             {"to-latest", {false, false}},
                             {"to-time", {true, false}},
                             {"to-offset", {true, false}},
                             {"dry-run", {false, false}}},
                            "GROUP")) {
    return *done;
  }
  const ParsedFlags& flags = cmd.flags();
  if (absl::Status s = Require(flags, {"topic"}); !s.ok()) {
    return cmd.Usage(s.message());
  }
  v1::ResetGroupOffsetsRequest request;
  request.set_group_id(cmd.name());
  request.set_topic(flags.Get("topic"));
  request.set_dry_run(flags.Has("dry-run"));
  for (const std::string& text : flags.GetAll("partition")) {
    int32_t partition = 0;
    if (auto problem = ParseInt<int32_t>(
            text, "partition", 0, "a partition number (an integer >= 0)",
            &partition)) {
      return cmd.Usage(*problem);
    }
    request.add_partitions(partition);
  }

  std::vector<std::string> targets;
  for (const char* flag : {"to-earliest", "to-latest", "to-time", "to-offset"}) {
    if (flags.Has(flag)) targets.push_back(absl::StrCat("--", flag));
  }
  if (targets.empty()) {
    return cmd.Usage(
        "one of --to-earliest, --to-latest, --to-time or --to-offset is "
        "required");
  }
  if (targets.size() > 1) {
    return cmd.Usage(absl::StrCat(
        "flags ", absl::StrJoin(targets, " and "),
        " cannot be combined: give one of --to-earliest, --to-latest, "
        "--to-time or --to-offset"));
  }
  if (flags.Has("to-earliest")) {
    request.set_earliest(true);
  } else if (flags.Has("to-latest")) {
    request.set_latest(true);
  } else if (flags.Has("to-time")) {
    const std::string text = flags.Get("to-time");
    absl::Time time;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error) ||
        time == absl::InfinitePast() || time == absl::InfiniteFuture()) {
      return cmd.Usage(absl::StrCat("flag --to-time: '", text,
                                    "' is not an RFC 3339 time (e.g. "
                                    "2025-01-01T12:00:00Z)"));
    }
    // ToUnixSeconds rounds toward the past, so the nanos are never
    // negative, as Timestamp requires.
    const int64_t seconds = absl::ToUnixSeconds(time);
    request.mutable_time()->set_seconds(seconds);
    request.mutable_time()->set_nanos(static_cast<int32_t>(
        (time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  } else {
    int64_t offset = 0;
    if (auto problem = ParseInt<int64_t>(flags.Get("to-offset"), "to-offset",
                                         0, "an offset (an integer >= 0)",
                                         &offset)) {
      return cmd.Usage(*problem);
    }
    request.set_offset(offset);
  }

  const std::string group = cmd.name();
  return cmd.Call(
      &v1::Admin::Stub::ResetGroupOffsets, request,
      [&group](const v1::ResetGroupOffsetsResponse& r, std::ostream& out) {
        Table table({"TOPIC", "PARTITION", "PREVIOUS", "NEW"});
        for (const v1::GroupOffsetReset& o : r.offsets()) {
          table.AddRow({o.topic(), absl::StrCat(o.partition()),
                        OffsetOrDash(o.previous_offset()),
                        absl::StrCat(o.new_offset())});
        }
        out << table.Render();
        // What the sidecar says it did, not what was asked.
        if (r.applied()) {
          out << "committed new offsets for group " << group << "\n";
        } else {
          out << "dry run: nothing committed\n";
        }
      });
}

using SubcommandFn = int (*)(Subcommand&, const std::vector<std::string>&);

// Runs the subcommand named by `args[0]` of `group` ("topics") from
// `subcommands`; `names` lists them for the usage error.
int Dispatch(absl::string_view group, const char* usage,
             const std::map<std::string, SubcommandFn>& subcommands,
             absl::string_view names, const std::vector<std::string>& args,
             std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    return UsageError(err, group, group,
                      absl::StrCat("a subcommand is required: ", names));
  }
  const std::string& name = args[0];
  if (name == "--help" || name == "-h" || name == "help") {
    out << usage;
    out.flush();
    return kExitOk;
  }
  auto it = subcommands.find(name);
  if (it == subcommands.end()) {
    return UsageError(err, group, group,
                      absl::StrCat("unknown subcommand '", name, "' (", names,
                                   ")"));
  }
  Subcommand cmd(group, name, usage, out, err);
  return it->second(cmd, std::vector<std::string>(args.begin() + 1, args.end()));
}

}  // namespace

int RunTopics(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  return Dispatch("topics", kTopicsUsage,
                  {{"list", &TopicsList},
                   {"describe", &TopicsDescribe},
                   {"create", &TopicsCreate},
                   {"delete", &TopicsDelete}},
                  "list, describe, create or delete", args, out, err);
}

int RunGroups(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  return Dispatch("groups", kGroupsUsage,
                  {{"list", &GroupsList},
                   {"describe", &GroupsDescribe},
                   {"reset", &GroupsReset}},
                  "list, describe or reset", args, out, err);
}

}  // namespace eventbus::cli
