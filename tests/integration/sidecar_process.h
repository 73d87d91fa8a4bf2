#pragma once

// The eventbus-sidecar binary as a child process, for tests that need the
// real process: its exit code, its log, its memory, signals.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

extern char** environ;

namespace eventbus::testing {

// A child process running eventbus-sidecar (EVENTBUS_SIDECAR_BINARY) with
// `args`, its stdout and stderr in a file. The destructor kills it if it is
// still running and prints its log when the test failed. Unless `args` set
// server.metrics_listen, the metrics listener takes a free loopback port
// (tests run side by side).
class SidecarProcess {
 public:
  explicit SidecarProcess(std::vector<std::string> args) {
    if (std::none_of(args.begin(), args.end(), [](const std::string& a) {
          return absl::StartsWith(a, "--server.metrics_listen");
        })) {
      args.push_back("--server.metrics_listen=127.0.0.1:0");
    }
    static int counter = 0;
    log_path_ = absl::StrCat(::testing::TempDir(), "sidecar-", getpid(), "-",
                             counter++, ".log");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> argv;
    std::string binary = EVENTBUS_SIDECAR_BINARY;
    argv.push_back(binary.data());
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int err = posix_spawn(&pid_, binary.c_str(), &actions, nullptr,
                                argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(err, 0) << "cannot start " << binary;
  }
  SidecarProcess(const SidecarProcess&) = delete;
  SidecarProcess& operator=(const SidecarProcess&) = delete;
  ~SidecarProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (::testing::Test::HasFailure()) std::cerr << "sidecar log:\n" << Log();
    unlink(log_path_.c_str());
  }

  pid_t pid() const { return pid_; }
  void Signal(int sig) { kill(pid_, sig); }

  // Waits for the process to exit; returns its exit code (or 128+signal).
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // The host:port of the metrics listener, from the log line that
  // announces it; "" before that line (or without a listener).
  std::string MetricsAddress() const {
    const std::string log = Log();
    const std::string kMarker = "metrics on http://";
    const size_t at = log.find(kMarker);
    if (at == std::string::npos) return "";
    const size_t start = at + kMarker.size();
    const size_t end = log.find("/metrics", start);
    return end == std::string::npos ? "" : log.substr(start, end - start);
  }

  // Resident memory (VmRSS of /proc/<pid>/status) in bytes, or nullopt.
  std::optional<int64_t> RssBytes() const {
    std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
    std::string line;
    while (std::getline(in, line)) {
      absl::string_view rest = line;
      if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
      rest = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&rest, "kB");
      int64_t kb = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) return kb * 1024;
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

// A fresh Unix socket address under the test's temporary directory.
inline std::string SidecarSocketAddress() {
  static int n = 0;
  const std::string path = absl::StrCat(::testing::TempDir(), "eventbus-", getpid(),
                                        "-sub-", n++, ".sock");
  unlink(path.c_str());
  return absl::StrCat("unix:", path);
}

// Waits until the sidecar behind `channel` reports SERVING.
inline bool WaitSidecarServing(const std::shared_ptr<grpc::Channel>& channel,
                               absl::Duration timeout) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&ctx, {}, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

}  // namespace eventbus::testing
