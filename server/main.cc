// eventbus-sidecar: the gRPC sidecar that publishes CloudEvents to Kafka.

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/synchronization/mutex.h"

#include "kafka/mock_cluster.h"
#include "server/config.h"
#include "server/logging.h"
#include "server/sidecar.h"

namespace {

// Blocks the stop signals in this thread before any other thread exists, so
// every thread inherits the mask and only sigwait() below receives them.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t stop_signals = BlockStopSignals();
  // Debian's Abseil is built in debug mode, where every Mutex::Lock also
  // updates a global lock-order graph to detect deadlocks: a cost on every
  // lock of the hot path (measured in perf). The tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args;
  bool dev = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(eventbus::server::ConfigHelp().c_str(), stdout);
      std::fputs(
          "\n--dev\n      Dev mode: use librdkafka's in-process mock cluster as "
          "Kafka (no Java,\n      no broker). Events live in memory only; for "
          "trying things, not for\n      production. kafka.brokers is "
          "ignored.\n",
          stdout);
      return 0;
    }
    if (arg == "--dev") {
      dev = true;
    } else {
      args.push_back(arg);
    }
  }
  absl::StatusOr<eventbus::server::Config> config = eventbus::server::LoadConfig(
      args, eventbus::server::ProcessEnvironment());
  if (!config.ok()) {
    std::fprintf(stderr, "eventbus-sidecar: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  if (absl::Status s =
          eventbus::server::ConfigureLogging(config->log_level, config->log_format);
      !s.ok()) {
    std::fprintf(stderr, "eventbus-sidecar: %s\n",
                 std::string(s.message()).c_str());
    return 2;
  }
  std::unique_ptr<eventbus::kafka::MockCluster> mock;
  if (dev) {
    absl::StatusOr<std::unique_ptr<eventbus::kafka::MockCluster>> started =
        eventbus::kafka::MockCluster::Start();
    if (!started.ok()) {
      spdlog::critical("cannot start dev mode: {}",
                       std::string(started.status().message()));
      return 1;
    }
    mock = *std::move(started);
    config->brokers = mock->bootstrap_servers();
    for (int i = 0; i < 3; ++i) {
      spdlog::warn(
          "DEV MODE: Kafka is librdkafka's in-process mock cluster ({}). Events "
          "live in this process's memory only and are gone when it stops. For "
          "trying eventbus, not for production.",
          config->brokers);
    }
  }
  absl::StatusOr<std::unique_ptr<eventbus::server::Sidecar>> sidecar =
      eventbus::server::Sidecar::Start(*config);
  if (!sidecar.ok()) {
    spdlog::critical("cannot start: {}", std::string(sidecar.status().message()));
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}, shutting down", strsignal(sig));
  (*sidecar)->Shutdown().IgnoreError();
  sidecar->reset();
  mock.reset();
  return 0;
}
