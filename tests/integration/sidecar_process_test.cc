// The eventbus-sidecar binary as an operator runs it: configuration errors
// stop the start, it serves on a Unix socket, and SIGTERM during a busy
// PublishStream loses no acknowledged event.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_process.h"

namespace eventbus::testing {
namespace {

std::string SocketAddress() { return SidecarSocketAddress(); }

bool WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                 absl::Duration timeout) {
  return WaitSidecarServing(channel, timeout);
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

// No broker answers, and a Publish with a long deadline waits for one: SIGTERM
// still ends the process within the grace period (plus the short flush
// allowance), and the call learns that its event was not written.
TEST(SidecarProcessTest, SigtermWithoutKafkaEndsWithinTheGracePeriod) {
  const std::string address = SocketAddress();
  SidecarProcess p({"--kafka.brokers=127.0.0.1:1",
                    absl::StrCat("--server.listen=", address),
                    "--server.shutdown_grace=2s"});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(channel->WaitForConnected(
      absl::ToChronoTime(absl::Now() + absl::Seconds(30))))
      << p.Log();
  auto stub = v1::EventBus::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
  v1::PublishRequest req;
  req.set_topic("no-kafka");
  req.mutable_event()->set_type("com.example.grace");
  v1::PublishResponse resp;
  grpc::Status status;
  std::thread call([&] { status = stub->Publish(&ctx, req, &resp); });
  absl::SleepFor(absl::Seconds(1));  // the event waits for a broker
  const absl::Time signalled = absl::Now();
  p.Signal(SIGTERM);
  const int code = p.Wait();
  const absl::Duration took = absl::Now() - signalled;
  call.join();
  EXPECT_LT(took, absl::Seconds(10))
      << "shutdown_grace=2s, exit code " << code << "\n" << p.Log();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "not written"))
      << status.error_message();
  std::cerr << "shutdown without Kafka took " << took << ", exit code " << code
            << "\n";
}

TEST(SidecarProcessTest, SigtermEndsSubscribeStreamsAndCommitsWhatWasAcked) {
  const std::string topic = UniqueTopic("sigterm-sub");
  CreateTopic(topic, 1);
  std::vector<kafka::Record> records;
  for (int i = 0; i < 100; ++i) {
    kafka::Record r;
    r.topic = topic;
    r.value = absl::StrCat(i);
    records.push_back(std::move(r));
  }
  ProduceRecords(records);
  const std::string address = SocketAddress();
  SidecarProcess p({absl::StrCat("--kafka.brokers=", KafkaBrokers()),
                    absl::StrCat("--server.listen=", address)});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitServing(channel, absl::Seconds(30))) << p.Log();
  auto stub = v1::EventBus::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest req;
  req.mutable_subscription()->add_topics(topic);
  req.mutable_subscription()->set_group(UniqueTopic("group"));
  const std::string group = req.subscription().group();
  req.mutable_subscription()->set_start_position(v1::START_POSITION_EARLIEST);
  req.mutable_subscription()->set_max_outstanding_messages(100);
  ASSERT_TRUE(stream->Write(req));
  std::vector<v1::Delivery> got;
  v1::SubscribeResponse resp;
  while (got.size() < 100 && stream->Read(&resp)) {
    for (const auto& d : resp.deliveries()) got.push_back(d);
  }
  ASSERT_EQ(got.size(), 100u);
  // Ack the first 40; the rest stay unacked.
  v1::SubscribeRequest ack;
  for (int i = 0; i < 40; ++i) ack.mutable_ack()->add_delivery_ids(got[i].delivery_id());
  ASSERT_TRUE(stream->Write(ack));
  absl::SleepFor(absl::Milliseconds(500));
  p.Signal(SIGTERM);
  while (stream->Read(&resp)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "shutting down"))
      << status.error_message();
  EXPECT_EQ(p.Wait(), 0) << p.Log();
  // What was acked is committed, and nothing more.
  EXPECT_EQ(CommittedOffsets(group, topic), (std::map<int32_t, int64_t>{{0, 40}}));
}

TEST(SidecarProcessTest, DevModePublishesAndSubscribesWithoutKafka) {
  const std::string address = SocketAddress();
  SidecarProcess p({"--dev", absl::StrCat("--server.listen=", address)});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitServing(channel, absl::Seconds(30))) << p.Log();
  EXPECT_TRUE(absl::StrContains(p.Log(), "DEV MODE")) << p.Log();
  EXPECT_TRUE(absl::StrContains(p.Log(), "memory only")) << p.Log();
  auto stub = v1::EventBus::NewStub(channel);
  grpc::ClientContext pctx;
  v1::PublishRequest pub;
  pub.set_topic("dev-demo");
  pub.set_key("k");
  pub.mutable_event()->set_type("com.example.dev");
  pub.mutable_event()->set_data("hello");
  v1::PublishResponse presp;
  grpc::Status s = stub->Publish(&pctx, pub, &presp);
  ASSERT_TRUE(s.ok()) << s.error_message();

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest req;
  req.mutable_subscription()->add_topics("dev-demo");
  req.mutable_subscription()->set_group("dev");
  req.mutable_subscription()->set_start_position(v1::START_POSITION_EARLIEST);
  ASSERT_TRUE(stream->Write(req));
  v1::SubscribeResponse resp;
  ASSERT_TRUE(stream->Read(&resp)) << p.Log();
  ASSERT_EQ(resp.deliveries_size(), 1);
  EXPECT_EQ(resp.deliveries(0).event().id(), presp.event_id());
  EXPECT_EQ(resp.deliveries(0).event().data(), "hello");
  v1::SubscribeRequest ack;
  ack.mutable_ack()->add_delivery_ids(resp.deliveries(0).delivery_id());
  ASSERT_TRUE(stream->Write(ack));
  stream->WritesDone();
  while (stream->Read(&resp)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 0) << p.Log();
}

}  // namespace
}  // namespace eventbus::testing
