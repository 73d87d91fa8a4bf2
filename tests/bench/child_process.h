#pragma once

// A server the benchmark runs as a process of its own (the sidecar, the
// gRPC floor), so that its memory and CPU time can be read from /proc and
// it shares no gRPC threads with the load generator.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

extern char** environ;

namespace eventbus::bench {

// A free TCP port on 127.0.0.1 (bound once and released: another process
// could take it in between, which on a benchmark machine does not happen).
inline absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  if (port <= 0) return absl::InternalError("no free port on 127.0.0.1");
  return port;
}

// CPU time and memory of one process, from /proc.
struct ProcessUsage {
  double cpu_seconds = 0;  // user + system
  int64_t rss_kb = -1;       // VmRSS
  int64_t anon_rss_kb = -1;  // RssAnon: private memory, not shared library pages
  int64_t peak_rss_kb = -1;  // VmHWM
};

inline std::optional<ProcessUsage> ReadUsage(pid_t pid) {
  ProcessUsage usage;
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold
  // spaces: state is field 3, utime 14, stime 15.
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close_paren + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return std::nullopt;
  }
  usage.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    int64_t kb = -1;
    std::istringstream rest(line.substr(line.find(':') + 1));
    if (line.rfind("VmRSS:", 0) == 0 && (rest >> kb)) usage.rss_kb = kb;
    if (line.rfind("VmHWM:", 0) == 0 && (rest >> kb)) usage.peak_rss_kb = kb;
    if (line.rfind("RssAnon:", 0) == 0 && (rest >> kb)) usage.anon_rss_kb = kb;
  }
  return usage;
}

// A child process serving gRPC on 127.0.0.1:<port>, its output in a log
// file. Stopped with SIGTERM (then SIGKILL) when destroyed.
class ChildServer {
 public:
  // Starts `binary` with `args` (which should make it listen on `address`)
  // and waits until its health service answers SERVING.
  static absl::StatusOr<std::unique_ptr<ChildServer>> Start(
      const std::string& name, const std::string& binary,
      std::vector<std::string> args, const std::string& address,
      absl::Duration timeout) {
    auto child = std::unique_ptr<ChildServer>(new ChildServer);
    child->name_ = name;
    child->address_ = address;
    child->log_path_ =
        absl::StrCat("/tmp/eventbus-bench-", getpid(), "-", name, ".log");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, child->log_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> argv;
    std::string program = binary;
    argv.push_back(program.data());
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int err = posix_spawn(&child->pid_, program.c_str(), &actions,
                                nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot start ", binary, ": ", strerror(err)));
    }
    if (!child->WaitServing(timeout)) {
      return absl::UnavailableError(absl::StrCat(
          name, " (", binary, ") did not serve on ", address, " within ",
          absl::FormatDuration(timeout), "; its log:\n", child->Log()));
    }
    return child;
  }

  ChildServer(const ChildServer&) = delete;
  ChildServer& operator=(const ChildServer&) = delete;
  ~ChildServer() {
    Stop();
    unlink(log_path_.c_str());
  }

  const std::string& address() const { return address_; }
  std::optional<ProcessUsage> Usage() const { return ReadUsage(pid_); }

  // SIGTERM, then SIGKILL after 30 s; returns the exit code (128 + signal).
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    const absl::Time limit = absl::Now() + absl::Seconds(30);
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > limit) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  ChildServer() = default;

  bool WaitServing(absl::Duration timeout) {
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel);
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;  // exited
      }
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

  std::string name_;
  std::string address_;
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

}  // namespace eventbus::bench
