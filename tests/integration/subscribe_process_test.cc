// Subscribe against the eventbus-sidecar binary: a client that stops acking
// on a topic with far more data than its flow-control window keeps the
// sidecar's memory bounded, and keeps its group membership while it thinks.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "server/event_codec.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_process.h"

namespace eventbus::testing {
namespace {

// Writes `count` binary-mode CloudEvents of `data_bytes` each to `topic`,
// in chunks so the test never holds them all.
void ProduceBigEvents(const std::string& topic, int count, size_t data_bytes) {
  constexpr int kChunk = 1000;
  for (int start = 0; start < count; start += kChunk) {
    std::vector<kafka::Record> records;
    for (int i = start; i < std::min(count, start + kChunk); ++i) {
      v1::PublishRequest req;
      req.set_topic(topic);
      req.set_key(absl::StrCat("key-", i % 97));
      req.mutable_event()->set_id(absl::StrCat("big-", i));
      req.mutable_event()->set_type("com.example.big");
      std::string data(data_bytes, 'x');
      req.mutable_event()->set_data(std::move(data));
      ASSERT_TRUE(server::PrepareRequest(req, "//tests", absl::Now()).ok());
      absl::StatusOr<kafka::Record> r =
          server::EncodeRecord(req, server::ContentMode::kBinary, int64_t{1} << 30);
      ASSERT_TRUE(r.ok()) << r.status();
      records.push_back(*std::move(r));
    }
    ProduceRecords(records);
  }
}

// The client side of one Subscribe stream: a reader thread collects
// deliveries and ack errors.
class Subscriber {
 public:
  Subscriber(v1::EventBus::Stub* stub, const v1::Subscription& sub) {
    stream_ = stub->Subscribe(&ctx_);
    v1::SubscribeRequest first;
    *first.mutable_subscription() = sub;
    EXPECT_TRUE(stream_->Write(first));
    reader_ = std::thread([this] {
      v1::SubscribeResponse resp;
      while (stream_->Read(&resp)) {
        absl::MutexLock l(&mu_);
        for (const v1::Delivery& d : resp.deliveries()) deliveries_.push_back(d);
        for (const v1::AckError& e : resp.ack_errors()) errors_.push_back(e);
      }
      absl::MutexLock l(&mu_);
      ended_ = true;
    });
  }
  ~Subscriber() {
    if (reader_.joinable()) {
      ctx_.TryCancel();
      reader_.join();
    }
  }

  bool WaitReceived(size_t n, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() { return deliveries_.size() >= n || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return deliveries_.size() >= n;
  }
  std::vector<v1::Delivery> deliveries() const {
    absl::MutexLock l(&mu_);
    return deliveries_;
  }
  std::vector<v1::AckError> errors() const {
    absl::MutexLock l(&mu_);
    return errors_;
  }
  bool ended() const {
    absl::MutexLock l(&mu_);
    return ended_;
  }
  bool Ack(const std::vector<v1::Delivery>& ds) {
    v1::SubscribeRequest r;
    for (const v1::Delivery& d : ds) r.mutable_ack()->add_delivery_ids(d.delivery_id());
    return stream_->Write(r);
  }
  grpc::Status Close() {
    stream_->WritesDone();
    reader_.join();
    return stream_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>>
      stream_;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<v1::Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AckError> errors_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

// 12.
TEST(SubscribeProcessTest, SilentClientKeepsMemoryBoundedAndItsMembership) {
  const std::string topic = UniqueTopic("sub-process-big");
  CreateTopic(topic, 6);
  // 20,000 events of 10 KB: 200 MB, far above what the sidecar may hold.
  constexpr int kEvents = 20000;
  constexpr size_t kEventBytes = 10000;
  const absl::Time produce_start = absl::Now();
  ProduceBigEvents(topic, kEvents, kEventBytes);
  int64_t in_kafka = 0;
  for (const auto& [partition, high] : HighWatermarks(topic)) in_kafka += high;
  ASSERT_EQ(in_kafka, kEvents);
  std::cerr << "produced " << kEvents << " x " << kEventBytes << " bytes in "
            << absl::Now() - produce_start << "\n";

  const std::string address = SidecarSocketAddress();
  SidecarProcess p({absl::StrCat("--kafka.brokers=", KafkaBrokers()),
                    absl::StrCat("--server.listen=", address),
                    "--kafka.consumer.session.timeout.ms=6000",
                    "--kafka.consumer.max.poll.interval.ms=7000"});
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30))) << p.Log();
  auto stub = v1::EventBus::NewStub(channel);
  const std::optional<int64_t> rss_idle = p.RssBytes();
  ASSERT_TRUE(rss_idle.has_value());

  v1::Subscription sub;
  sub.add_topics(topic);
  sub.set_group(UniqueTopic("group-process"));
  sub.set_start_position(v1::START_POSITION_EARLIEST);
  sub.set_max_outstanding_bytes(1 << 20);
  Subscriber s(stub.get(), sub);
  ASSERT_TRUE(s.WaitReceived(50, absl::Seconds(30)))
      << "received " << s.deliveries().size();

  // The client thinks for 16 s, beyond session.timeout.ms (6 s) and
  // max.poll.interval.ms (7 s), without acking anything.
  int64_t rss_max = 0;
  std::string samples;
  for (int i = 0; i < 16; ++i) {
    absl::SleepFor(absl::Seconds(1));
    const int64_t rss = p.RssBytes().value_or(0);
    rss_max = std::max(rss_max, rss);
    absl::StrAppend(&samples, rss >> 20, " ");
  }
  const std::vector<v1::Delivery> held = s.deliveries();
  int64_t held_bytes = 0;
  for (const v1::Delivery& d : held) held_bytes += static_cast<int64_t>(d.event().data().size());
  std::cerr << "sidecar RSS: idle " << (*rss_idle >> 20) << " MiB; while the client "
            << "holds " << held.size() << " deliveries (" << (held_bytes >> 10)
            << " KiB): " << samples << "MiB (max " << (rss_max >> 20) << " MiB)\n";
  // Flow control: about 1 MiB outstanding (one delivery may overshoot).
  EXPECT_LE(held_bytes, (1 << 20) + static_cast<int64_t>(kEventBytes) + 4096)
      << held.size() << " deliveries outstanding";
  // The topic holds 200 MB; a sidecar that buffered it would exceed this.
  EXPECT_LT(rss_max, int64_t{150} << 20) << "sidecar RSS samples (MiB): " << samples;
  EXPECT_FALSE(s.ended()) << "the stream ended while the client was thinking";

  // Still a member: acks of everything outstanding go through, and more
  // arrives, from where each partition left off.
  std::map<int32_t, int64_t> last_offset;
  for (const v1::Delivery& d : held) {
    last_offset[d.partition()] = std::max(last_offset[d.partition()], d.offset());
  }
  ASSERT_TRUE(s.Ack(held));
  ASSERT_TRUE(s.WaitReceived(held.size() + 20, absl::Seconds(15)))
      << "no more deliveries after acking";
  absl::SleepFor(absl::Seconds(2));
  EXPECT_TRUE(s.errors().empty())
      << s.errors().size() << " ack errors, first: " << s.errors()[0].ShortDebugString();
  const std::vector<v1::Delivery> all = s.deliveries();
  for (size_t i = held.size(); i < all.size(); ++i) {
    const v1::Delivery& d = all[i];
    EXPECT_EQ(d.attempt(), 1) << d.partition() << "/" << d.offset();
    auto it = last_offset.find(d.partition());
    if (it != last_offset.end()) {
      EXPECT_GT(d.offset(), it->second)
          << "partition " << d.partition() << " started over: membership lost";
    }
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_FALSE(absl::StrContains(p.Log(), "max.poll.interval"))
      << "librdkafka left the group for a missed poll";
  grpc::Status closed = s.Close();
  EXPECT_TRUE(closed.ok()) << closed.error_code() << " " << closed.error_message();
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 0);
}

}  // namespace
}  // namespace eventbus::testing
