// The C++ client library against an in-process sidecar and the real local
// Kafka: what is published asynchronously is in Kafka, and a Subscriber
// receives all of it and commits past it.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/cpp/publisher.h"
#include "client/cpp/subscriber.h"
#include "tests/integration/sidecar_fixture.h"

namespace eventbus::testing {
namespace {

class ClientTest : public SidecarFixture {
 protected:
  // The group's committed offsets once they reach `want`, or after 15 s.
  std::map<int32_t, int64_t> WaitCommittedTo(const std::string& group,
                                             const std::string& topic,
                                             const std::map<int32_t, int64_t>& want) {
    std::map<int32_t, int64_t> committed;
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    do {
      committed = CommittedOffsets(group, topic);
      if (committed == want) break;
      absl::SleepFor(absl::Milliseconds(200));
    } while (absl::Now() < give_up);
    return committed;
  }
};

TEST_F(ClientTest, PublishAsyncThenSubscribeReceivesEverythingAndCommits) {
  ASSERT_NO_FATAL_FAILURE(StartSidecar());
  ASSERT_NO_FATAL_FAILURE(WaitServing());
  const std::string topic = UniqueTopic("client");
  CreateTopic(topic, 3);
  constexpr int kEvents = 5000;

  client::Publisher publisher(sidecar_->addresses().at(0));
  std::atomic<int> ok{0};
  absl::Mutex mu;
  std::vector<std::string> errors;
  std::set<std::tuple<int32_t, int64_t>> published;
  for (int i = 0; i < kEvents; ++i) {
    v1::PublishRequest r;
    r.set_topic(topic);
    r.set_key(absl::StrCat("key-", i % 17));
    r.mutable_event()->set_type("com.example.client.test");
    r.mutable_event()->set_data(absl::StrCat("event-", i));
    publisher.PublishAsync(std::move(r),
                           [&](absl::StatusOr<client::PublishResult> result) {
                             absl::MutexLock lock(&mu);
                             if (result.ok()) {
                               ++ok;
                               published.emplace(result->partition,
                                                 result->offset);
                             } else {
                               errors.push_back(result.status().ToString());
                             }
                           });
  }
  ASSERT_TRUE(publisher.Close().ok());
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(ok.load(), kEvents);
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(published.size(), static_cast<size_t>(kEvents));
  }
  int64_t in_kafka = 0;
  const std::map<int32_t, int64_t> highs = HighWatermarks(topic);
  for (const auto& [partition, high] : highs) in_kafka += high;
  EXPECT_EQ(in_kafka, kEvents);

  const std::string group = UniqueTopic("client-group");
  client::SubscriberOptions options;
  options.topics = {topic};
  options.group = group;
  options.start = v1::START_POSITION_EARLIEST;
  options.concurrency = 4;
  client::Subscriber subscriber(sidecar_->addresses().at(0), options);
  std::set<std::tuple<int32_t, int64_t>> received;
  std::set<std::string> data;
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] {
    status = subscriber.Run([&](const v1::Delivery& d) {
      absl::MutexLock lock(&mu);
      received.emplace(d.partition(), d.offset());
      data.insert(d.event().data());
      if (received.size() == static_cast<size_t>(kEvents)) subscriber.Stop();
      return absl::OkStatus();
    });
  });
  {
    absl::MutexLock lock(&mu);
    auto all = [&] { return received.size() >= static_cast<size_t>(kEvents); };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)))
        << "received " << received.size() << " of " << kEvents;
  }
  subscriber.Stop();
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, published);
  EXPECT_EQ(data.size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(subscriber.ack_errors(), 0);

  // Every delivery was acked before the stream ended, and the member
  // commits when it ends.
  EXPECT_EQ(WaitCommittedTo(group, topic, highs), highs);
}

// Lease extension against the real sidecar and Kafka: handlers slower than
// the ack deadline, with events waiting in the Subscriber behind them for
// several deadlines, yet each event is handled once, on its first attempt,
// and the group commits past all of them.
TEST_F(ClientTest, SlowHandlersKeepTheirDeliveriesThroughLeaseExtension) {
  ASSERT_NO_FATAL_FAILURE(StartSidecar());
  ASSERT_NO_FATAL_FAILURE(WaitServing());
  const std::string topic = UniqueTopic("client-lease");
  CreateTopic(topic, 1);
  constexpr int kEvents = 5;
  client::Publisher publisher(sidecar_->addresses().at(0));
  for (int i = 0; i < kEvents; ++i) {
    v1::PublishRequest r;
    r.set_topic(topic);
    r.mutable_event()->set_type("com.example.client.lease");
    r.mutable_event()->set_data(absl::StrCat("event-", i));
    ASSERT_TRUE(publisher.Publish(std::move(r)).ok());
  }
  ASSERT_TRUE(publisher.Close().ok());

  const std::string group = UniqueTopic("client-lease-group");
  client::SubscriberOptions options;
  options.topics = {topic};
  options.group = group;
  options.start = v1::START_POSITION_EARLIEST;
  options.ack_deadline = absl::Seconds(1);
  client::Subscriber subscriber(sidecar_->addresses().at(0), options);
  absl::Mutex mu;
  std::vector<std::string> handled;
  std::vector<int> attempts;
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] {
    status = subscriber.Run([&](const v1::Delivery& d) {
      absl::SleepFor(absl::Milliseconds(800));
      absl::MutexLock lock(&mu);
      handled.push_back(d.event().data());
      attempts.push_back(d.attempt());
      return absl::OkStatus();
    });
  });
  {
    absl::MutexLock lock(&mu);
    auto all = [&] { return handled.size() >= static_cast<size_t>(kEvents); };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)))
        << "handled " << handled.size() << " of " << kEvents;
  }
  // Long enough for a redelivery of any of them to arrive and be handled.
  absl::SleepFor(absl::Seconds(2));
  subscriber.Stop();
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  absl::MutexLock lock(&mu);
  EXPECT_EQ(handled, (std::vector<std::string>{"event-0", "event-1", "event-2",
                                               "event-3", "event-4"}));
  EXPECT_EQ(attempts, std::vector<int>(kEvents, 1));
  EXPECT_EQ(subscriber.ack_errors(), 0);
  const std::map<int32_t, int64_t> highs = HighWatermarks(topic);
  EXPECT_EQ(WaitCommittedTo(group, topic, highs), highs);
}

// The server's delivery ids restart at 1 on every stream. An ack the app
// makes late, for a delivery of an earlier Run, must not settle the delivery
// with the same server id on the next stream: nothing is committed until
// the current delivery is acked.
TEST_F(ClientTest, AnAckForAnEarlierRunsDeliveryCommitsNothing) {
  ASSERT_NO_FATAL_FAILURE(StartSidecar());
  ASSERT_NO_FATAL_FAILURE(WaitServing());
  const std::string topic = UniqueTopic("client-stale-ack");
  CreateTopic(topic, 1);
  client::Publisher publisher(sidecar_->addresses().at(0));
  v1::PublishRequest r;
  r.set_topic(topic);
  r.mutable_event()->set_type("com.example.client.stale");
  ASSERT_TRUE(publisher.Publish(r).ok());
  ASSERT_TRUE(publisher.Close().ok());

  const std::string group = UniqueTopic("client-stale-group");
  client::SubscriberOptions options;
  options.topics = {topic};
  options.group = group;
  options.start = v1::START_POSITION_EARLIEST;
  options.auto_ack = false;
  client::Subscriber subscriber(sidecar_->addresses().at(0), options);
  absl::Mutex mu;
  std::vector<uint64_t> ids;
  auto handler = [&](const v1::Delivery& d) {
    absl::MutexLock lock(&mu);
    ids.push_back(d.delivery_id());
    return absl::OkStatus();
  };
  auto wait_for = [&](size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [&] { return ids.size() >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  };

  // Run 1 receives the event and ends without settling it: it goes back.
  absl::Status first_status, second_status;
  std::thread first([&] { first_status = subscriber.Run(handler); });
  EXPECT_TRUE(wait_for(1));
  subscriber.Stop();
  first.join();
  EXPECT_TRUE(first_status.ok()) << first_status;

  // Run 2 receives it again, with the same server id.
  std::thread second([&] { second_status = subscriber.Run(handler); });
  const bool redelivered = wait_for(2);
  if (!redelivered) {
    subscriber.Stop();
    second.join();
    FAIL() << "the event was not delivered again on the second Run";
  }
  uint64_t stale, current;
  {
    absl::MutexLock lock(&mu);
    stale = ids[0];
    current = ids[1];
  }
  EXPECT_NE(stale, current);
  subscriber.Ack(stale);
  absl::SleepFor(absl::Seconds(3));  // the member commits every second
  const std::map<int32_t, int64_t> done = {{0, 1}};
  EXPECT_NE(CommittedOffsets(group, topic), done) << "the stale ack was applied";
  subscriber.Ack(current);
  EXPECT_EQ(WaitCommittedTo(group, topic, done), done);
  subscriber.Stop();
  second.join();
  EXPECT_TRUE(second_status.ok()) << second_status;
  EXPECT_EQ(subscriber.ack_errors(), 0);
}

}  // namespace
}  // namespace eventbus::testing
