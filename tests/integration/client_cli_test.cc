// The `eventbus` command-line tool (EVENTBUS_CLI_BINARY) against the
// eventbus-sidecar binary and the real local Kafka: publish lines from
// stdin, subscribe and read them back as JSON lines, usage errors.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_process.h"

namespace eventbus::testing {
namespace {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the CLI with `args`, `input` as its standard input; gives up (and
// kills it) after `timeout`.
// `stdout_path` replaces the captured standard output (left unread).
CliResult RunCli(std::vector<std::string> args, const std::string& input = "",
                 absl::Duration timeout = absl::Seconds(60),
                 const std::string& stdout_path = "") {
  static int n = 0;
  const std::string base =
      absl::StrCat(::testing::TempDir(), "eventbus-cli-", getpid(), "-", n++);
  const std::string in_path = base + ".in", out_path = base + ".out",
                    err_path = base + ".err";
  std::ofstream(in_path) << input;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(
      &actions, 1, stdout_path.empty() ? out_path.c_str() : stdout_path.c_str(),
      O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string binary = EVENTBUS_CLI_BINARY;
  std::vector<char*> argv{binary.data()};
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  CliResult result;
  if (posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(),
                  environ) != 0) {
    ADD_FAILURE() << "cannot start " << binary;
    return result;
  }
  posix_spawn_file_actions_destroy(&actions);
  const absl::Time give_up = absl::Now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > give_up) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "eventbus did not exit within " << timeout;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  unlink(in_path.c_str());
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return result;
}

// One JSON line parsed into a google.protobuf.Struct.
google::protobuf::Struct ParseLine(const std::string& line) {
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(line, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
  return s;
}

const google::protobuf::Value& Field(const google::protobuf::Struct& s,
                                     const std::string& name) {
  static const google::protobuf::Value kMissing;
  auto it = s.fields().find(name);
  EXPECT_NE(it, s.fields().end()) << "no field " << name;
  return it == s.fields().end() ? kMissing : it->second;
}

// Each test runs the CLI against a sidecar process of its own, serving on
// a Unix socket (`address_`).
class ClientCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sidecar_ = std::make_unique<SidecarProcess>(std::vector<std::string>{
        absl::StrCat("--kafka.brokers=", KafkaBrokers()),
        absl::StrCat("--server.listen=", address_), "--events.source=//cli/test"});
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30))) << sidecar_->Log();
  }

  const std::string address_ = SidecarSocketAddress();
  std::unique_ptr<SidecarProcess> sidecar_;
};

TEST_F(ClientCliTest, PublishFromStdinThenSubscribePrintsThem) {
  const std::string& address = address_;
  const std::string topic = UniqueTopic("cli");
  CreateTopic(topic, 1);

  CliResult pub = RunCli({"publish", "--address", address, "--topic", topic,
                          "--type", "com.example.cli", "--key", "k1",
                          "--subject", "orders/1", "--extension", "tenant=acme",
                          "--json"},
                         "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
  EXPECT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_TRUE(absl::StrContains(pub.err, "published 3 events, 0 errors"))
      << pub.err;

  CliResult sub = RunCli({"subscribe", "--address", address, "--topic", topic,
                          "--group", UniqueTopic("cli-group"), "--from",
                          "earliest", "--count", "3"});
  EXPECT_EQ(sub.exit_code, 0) << sub.err;
  std::vector<std::string> lines =
      absl::StrSplit(sub.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << sub.out;
  for (int i = 0; i < 3; ++i) {
    const google::protobuf::Struct d = ParseLine(lines[i]);
    EXPECT_EQ(Field(d, "topic").string_value(), topic);
    EXPECT_EQ(Field(d, "partition").number_value(), 0);
    EXPECT_EQ(Field(d, "offset").number_value(), i);
    EXPECT_EQ(Field(d, "key").string_value(), "k1");
    EXPECT_EQ(Field(d, "attempt").number_value(), 1);
    EXPECT_GT(Field(d, "delivery_id").number_value(), 0);
    const google::protobuf::Struct& e = Field(d, "event").struct_value();
    EXPECT_EQ(Field(e, "type").string_value(), "com.example.cli");
    EXPECT_EQ(Field(e, "source").string_value(), "//cli/test");
    EXPECT_EQ(Field(e, "subject").string_value(), "orders/1");
    EXPECT_EQ(Field(e, "spec_version").string_value(), "1.0");
    EXPECT_EQ(Field(e, "data_content_type").string_value(), "application/json");
    EXPECT_EQ(Field(e, "data").string_value(), absl::StrCat("{\"n\":", i + 1, "}"));
    EXPECT_FALSE(Field(e, "id").string_value().empty());
    EXPECT_TRUE(absl::EndsWith(Field(e, "time").string_value(), "Z"))
        << Field(e, "time").string_value();
    EXPECT_EQ(Field(Field(e, "extensions").struct_value(), "tenant").string_value(),
              "acme");
  }

  // --raw prints the data only; --data publishes one payload --count times.
  CliResult pub2 = RunCli({"publish", "--address", address, "--topic", topic,
                           "--type", "com.example.cli", "--data", "hello",
                           "--count", "2"});
  EXPECT_EQ(pub2.exit_code, 0) << pub2.err;
  CliResult raw = RunCli({"subscribe", "--address", address, "--topic", topic,
                          "--group", UniqueTopic("cli-raw"), "--from",
                          "earliest", "--count", "5", "--raw"});
  EXPECT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_EQ(raw.out, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\nhello\nhello\n");
}

// Standard output full: the events could not be printed, so they are not
// acked; the command fails saying why, and the group's next member gets them.
TEST_F(ClientCliTest, SubscribeThatCannotPrintAcksNothingAndFails) {
  const std::string& address = address_;
  const std::string topic = UniqueTopic("cli-full");
  CreateTopic(topic, 1);
  CliResult pub = RunCli({"publish", "--address", address, "--topic", topic,
                          "--type", "com.example.cli", "--data", "x", "--count",
                          "5"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  const std::string group = UniqueTopic("cli-full-group");
  CliResult full = RunCli({"subscribe", "--address", address, "--topic", topic,
                           "--group", group, "--from", "earliest", "--count", "5"},
                          "", absl::Seconds(60), "/dev/full");
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_TRUE(absl::StrContains(full.err, "cannot write to standard output"))
      << full.err;
  EXPECT_TRUE(absl::StrContains(full.err, "not acked")) << full.err;
  const std::map<int32_t, int64_t> committed = CommittedOffsets(group, topic);
  EXPECT_TRUE(committed.empty() || committed.at(0) <= 0)
      << "committed offset " << committed.at(0) << " for events never printed";
  CliResult next = RunCli({"subscribe", "--address", address, "--topic", topic,
                           "--group", group, "--from", "earliest", "--count",
                           "5", "--raw"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(next.out, "x\nx\nx\nx\nx\n");
}

TEST_F(ClientCliTest, FailedEventsExitOneWithTheirStatus) {
  const std::string& address = address_;
  CliResult pub = RunCli({"publish", "--address", address, "--topic",
                          "bad topic name", "--type", "t", "--data", "x"});
  EXPECT_EQ(pub.exit_code, 1) << pub.err;
  EXPECT_TRUE(absl::StrContains(pub.err, "INVALID_ARGUMENT")) << pub.err;
  EXPECT_TRUE(absl::StrContains(pub.err, "1 errors")) << pub.err;
}

TEST(ClientCliUsageTest, UsageErrorsExitTwoNamingTheFlag) {
  CliResult bad = RunCli({"publish", "--address", "localhost:1", "--topic", "t",
                          "--type", "x", "--bogus", "1"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(bad.err, "--bogus")) << bad.err;

  CliResult missing = RunCli({"subscribe", "--address", "localhost:1",
                              "--topic", "t"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.err, "--group")) << missing.err;

  CliResult count = RunCli({"publish", "--address", "a:1", "--topic", "t",
                            "--type", "x", "--data", "d", "--count", "zero"});
  EXPECT_EQ(count.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(count.err, "--count")) << count.err;

  CliResult help = RunCli({"publish", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(help.out, "--rate")) << help.out;
  CliResult top = RunCli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(top.out, "eventbus subscribe")) << top.out;
}

}  // namespace
}  // namespace eventbus::testing
