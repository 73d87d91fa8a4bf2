// The eventbus-sidecar binary as an operator runs it: configuration errors
// stop the start, it serves on a Unix socket, and SIGTERM during a busy
// PublishStream loses no acknowledged event.

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/kafka_test_env.h"

extern char** environ;

namespace eventbus::testing {
namespace {

// A child process running eventbus-sidecar with its output in a file.
class SidecarProcess {
 public:
  explicit SidecarProcess(std::vector<std::string> args) {
    log_path_ = absl::StrCat(::testing::TempDir(), "sidecar-", getpid(), "-",
                             counter_++, ".log");
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
  ~SidecarProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (::testing::Test::HasFailure()) {
      std::cerr << "sidecar log:\n" << Log();
    }
    unlink(log_path_.c_str());
  }

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

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

std::string SocketAddress() {
  static int n = 0;
  const std::string path =
      absl::StrCat(::testing::TempDir(), "eventbus-", getpid(), "-", n++, ".sock");
  unlink(path.c_str());
  return absl::StrCat("unix:", path);
}

bool WaitServing(const std::shared_ptr<grpc::Channel>& channel,
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

TEST(SidecarProcessTest, UnknownConfigKeyStopsTheStartNamingIt) {
  SidecarProcess p({"--kafka.brokerz=localhost:9092"});
  EXPECT_EQ(p.Wait(), 2);
  EXPECT_TRUE(absl::StrContains(p.Log(), "kafka.brokerz")) << p.Log();
}

TEST(SidecarProcessTest, InvalidValueStopsTheStartNamingIt) {
  SidecarProcess p({"--limits.max_event_bytes=lots"});
  EXPECT_EQ(p.Wait(), 2);
  EXPECT_TRUE(absl::StrContains(p.Log(), "limits.max_event_bytes")) << p.Log();
}

TEST(SidecarProcessTest, InvalidLibrdkafkaPropertyStopsTheStartNamingIt) {
  SidecarProcess p({"--kafka.producer.linger.ms=soon",
                    absl::StrCat("--server.listen=", SocketAddress())});
  EXPECT_EQ(p.Wait(), 1);
  EXPECT_TRUE(absl::StrContains(p.Log(), "linger.ms")) << p.Log();
}

TEST(SidecarProcessTest, SigtermDuringPublishStreamLosesNoAckedEvent) {
  const std::string topic = UniqueTopic("sigterm");
  CreateTopic(topic, 3);
  const std::string address = SocketAddress();
  SidecarProcess p({absl::StrCat("--kafka.brokers=", KafkaBrokers()),
                    absl::StrCat("--server.listen=", address),
                    "--server.shutdown_grace=10s"});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitServing(channel, absl::Seconds(30))) << p.Log();
  auto stub = v1::EventBus::NewStub(channel);

  grpc::ClientContext ctx;
  auto stream = stub->PublishStream(&ctx);
  std::map<std::string, v1::PublishResponse> results;
  std::atomic<int> received{0};
  std::thread reader([&] {
    v1::PublishBatchResponse resp;
    while (stream->Read(&resp)) {
      for (const auto& r : resp.responses()) {
        results[r.correlation_id()] = r;
        ++received;
      }
    }
  });
  int sent = 0;
  bool signalled = false;
  for (int b = 0; b < 100000; ++b) {
    v1::PublishBatchRequest req;
    for (int i = 0; i < 20; ++i, ++sent) {
      v1::PublishRequest* r = req.add_requests();
      r->set_topic(topic);
      r->set_key(absl::StrCat("key-", sent % 13));
      r->set_correlation_id(absl::StrCat(sent));
      r->mutable_event()->set_type("com.example.sigterm");
      r->mutable_event()->set_data(absl::StrCat(sent));
    }
    if (!stream->Write(req)) break;
    if (!signalled && received.load() > 2000) {
      p.Signal(SIGTERM);
      signalled = true;
    }
    if (signalled && b % 10 == 0) absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(signalled) << "the stream never got going";
  stream->WritesDone();
  reader.join();
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "shutting down"))
      << status.error_message();
  EXPECT_EQ(p.Wait(), 0) << p.Log();

  std::map<std::string, std::string> acked;
  for (const auto& [corr, r] : results) {
    if (r.status().code() == 0) {
      acked[r.event_id()] = corr;
    } else {
      EXPECT_EQ(r.status().code(), grpc::StatusCode::UNAVAILABLE)
          << r.status().message();
    }
  }
  ASSERT_GT(acked.size(), 2000u);
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  std::map<std::string, int> count;
  for (const ConsumedRecord& r : records) ++count[r.Header("ce_id").value_or("")];
  for (const auto& [id, corr] : acked) {
    EXPECT_EQ(count[id], 1) << "acked event " << corr << " is not in Kafka once";
  }
  std::cerr << "sigterm test: sent " << sent << ", results " << results.size()
            << ", acked " << acked.size() << ", records " << records.size()
            << "\n";
}

}  // namespace
}  // namespace eventbus::testing
