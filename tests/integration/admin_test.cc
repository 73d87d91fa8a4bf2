// The Admin service against the real local Kafka: topics are created,
// described and deleted in Kafka itself; a group's committed offsets and lag
// equal what Kafka stores; a reset moves where the group's next Subscribe
// starts, and is refused while the group has a member.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "eventbus/v1/admin.grpc.pb.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_fixture.h"

namespace eventbus::testing {
namespace {

template <typename Request, typename Response, typename Method>
grpc::Status Call(v1::Admin::Stub* stub, Method method, const Request& request,
                  Response* response,
                  absl::Duration deadline = absl::Seconds(30)) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return (stub->*method)(&ctx, request, response);
}

class AdminTest : public SidecarFixture {
 protected:
  void StartAdmin(bool allow_changes) {
    StartSidecar([allow_changes](server::Config& c) {
      c.admin_allow_changes = allow_changes;
    });
    WaitServing();
    admin_ = v1::Admin::NewStub(channel_);
  }

  void TearDown() override {
    admin_.reset();
    SidecarFixture::TearDown();
  }

  grpc::Status CreateTopic(const std::string& topic, int partitions,
                           std::map<std::string, std::string> configs = {},
                           int replication_factor = 0) {
    v1::CreateTopicRequest req;
    req.set_topic(topic);
    req.set_partitions(partitions);
    req.set_replication_factor(replication_factor);
    req.mutable_configs()->insert(configs.begin(), configs.end());
    v1::CreateTopicResponse resp;
    return Call(admin_.get(), &v1::Admin::Stub::CreateTopic, req, &resp);
  }

  grpc::Status DescribeTopic(const std::string& topic, v1::TopicDescription* out) {
    v1::DescribeTopicRequest req;
    req.set_topic(topic);
    return Call(admin_.get(), &v1::Admin::Stub::DescribeTopic, req, out);
  }

  grpc::Status DescribeGroup(const std::string& group, v1::GroupDescription* out) {
    v1::DescribeGroupRequest req;
    req.set_group_id(group);
    return Call(admin_.get(), &v1::Admin::Stub::DescribeGroup, req, out);
  }

  grpc::Status Reset(v1::ResetGroupOffsetsRequest req,
                     v1::ResetGroupOffsetsResponse* out) {
    return Call(admin_.get(), &v1::Admin::Stub::ResetGroupOffsets, req, out);
  }

  // Publishes `count` events through the sidecar; event i has key
  // "key-<i % keys>". Returns the offsets per partition it got.
  std::map<int32_t, std::vector<int64_t>> Publish(const std::string& topic,
                                                  int count, int keys) {
    v1::PublishBatchRequest batch;
    for (int i = 0; i < count; ++i) {
      v1::PublishRequest* r = batch.add_requests();
      r->set_topic(topic);
      r->set_key(absl::StrCat("key-", i % keys));
      r->mutable_event()->set_type("com.example.admin");
      r->mutable_event()->set_data(absl::StrCat(i));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::PublishBatchResponse resp;
    grpc::Status s = stub_->PublishBatch(&ctx, batch, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::map<int32_t, std::vector<int64_t>> out;
    for (const v1::PublishResponse& r : resp.responses()) {
      EXPECT_EQ(r.status().code(), 0) << r.status().message();
      out[r.partition()].push_back(r.offset());
    }
    return out;
  }

  // A Subscribe stream that ended leaves its group in the background:
  // waits until Kafka shows no member.
  void WaitNoMembers(const std::string& group) {
    for (int i = 0; i < 200; ++i) {
      v1::GroupDescription g;
      if (DescribeGroup(group, &g).ok() && g.members_size() == 0) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "group " << group << " still has members after 10 s";
  }

  std::unique_ptr<v1::Admin::Stub> admin_;
};

// A member of `group` on `topic` through a Subscribe stream; acks nothing.
class Member {
 public:
  Member(v1::EventBus::Stub* stub, const std::string& group,
         const std::string& topic) {
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stream_ = stub->Subscribe(&ctx_);
    v1::SubscribeRequest req;
    v1::Subscription* s = req.mutable_subscription();
    s->set_group(group);
    s->add_topics(topic);
    s->set_start_position(v1::START_POSITION_EARLIEST);
    s->set_max_outstanding_messages(1);
    EXPECT_TRUE(stream_->Write(req));
  }
  ~Member() {
    ctx_.TryCancel();
    stream_->Finish().IgnoreError();
  }
  // The next delivery; nullopt when the stream ended.
  std::optional<v1::Delivery> Next() {
    v1::SubscribeResponse resp;
    while (stream_->Read(&resp)) {
      if (resp.deliveries_size() > 0) return resp.deliveries(0);
    }
    return std::nullopt;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>>
      stream_;
};

TEST_F(AdminTest, TopicIsCreatedDescribedListedAndDeletedInKafka) {
  StartAdmin(/*allow_changes=*/true);
  const std::string topic = UniqueTopic("admin-topic");
  ASSERT_TRUE(CreateTopic(topic, 3, {{"retention.ms", "3600000"}}).ok());

  // Kafka itself has the topic, with three partitions: events land there.
  std::map<int32_t, std::vector<int64_t>> published = Publish(topic, 30, 7);
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  ASSERT_EQ(high.size(), 3u);

  v1::TopicDescription d;
  grpc::Status s = DescribeTopic(topic, &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.name(), topic);
  EXPECT_FALSE(d.topic_id().empty());
  ASSERT_EQ(d.partitions_size(), 3);
  for (int p = 0; p < 3; ++p) {
    const v1::TopicPartitionDescription& pd = d.partitions(p);
    EXPECT_EQ(pd.partition(), p);
    EXPECT_GE(pd.leader(), 0);
    ASSERT_EQ(pd.replicas_size(), 1);
    EXPECT_EQ(pd.replicas(0), pd.leader());
    ASSERT_EQ(pd.isr_size(), 1);
    EXPECT_EQ(pd.low_watermark(), 0);
    EXPECT_EQ(pd.high_watermark(), high.at(p)) << "partition " << p;
  }
  const auto retention =
      std::find_if(d.configs().begin(), d.configs().end(),
                   [](const v1::TopicConfig& c) { return c.name() == "retention.ms"; });
  ASSERT_NE(retention, d.configs().end());
  EXPECT_EQ(retention->value(), "3600000");
  EXPECT_EQ(retention->source(), "DYNAMIC_TOPIC_CONFIG");
  EXPECT_FALSE(retention->is_default());

  // Listed, without internal topics unless asked.
  v1::ListTopicsRequest list;
  v1::ListTopicsResponse topics;
  ASSERT_TRUE(Call(admin_.get(), &v1::Admin::Stub::ListTopics, list, &topics).ok());
  bool found = false;
  for (const v1::TopicSummary& t : topics.topics()) {
    EXPECT_FALSE(t.internal()) << t.name();
    if (t.name() == topic) {
      found = true;
      EXPECT_EQ(t.partitions(), 3);
      EXPECT_EQ(t.replication_factor(), 1);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(std::is_sorted(topics.topics().begin(), topics.topics().end(),
                             [](const v1::TopicSummary& a, const v1::TopicSummary& b) {
                               return a.name() < b.name();
                             }));
  // Kafka creates __consumer_offsets at the first use of a group.
  CommitOffsets(UniqueTopic("admin-topic-group"), topic, {{0, 0}});
  list.set_include_internal(true);
  ASSERT_TRUE(Call(admin_.get(), &v1::Admin::Stub::ListTopics, list, &topics).ok());
  EXPECT_TRUE(std::any_of(topics.topics().begin(), topics.topics().end(),
                          [](const v1::TopicSummary& t) {
                            return t.name() == "__consumer_offsets" && t.internal();
                          }));

  // Deleted: Kafka no longer knows it.
  v1::DeleteTopicRequest del;
  del.set_topic(topic);
  v1::DeleteTopicResponse deleted;
  s = Call(admin_.get(), &v1::Admin::Stub::DeleteTopic, del, &deleted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(deleted.topic(), topic);
  s = DescribeTopic(topic, &d);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), topic)) << s.error_message();
  s = Call(admin_.get(), &v1::Admin::Stub::DeleteTopic, del, &deleted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(AdminTest, BadTopicRequestsGetStatusesNamingTheProblem) {
  StartAdmin(/*allow_changes=*/true);
  const std::string topic = UniqueTopic("admin-bad");
  ASSERT_TRUE(CreateTopic(topic, 1).ok());
  grpc::Status s = CreateTopic(topic, 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "already exists")) << s.error_message();

  s = CreateTopic("no spaces", 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "topic")) << s.error_message();

  s = CreateTopic(UniqueTopic("admin-bad"), -1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "partitions")) << s.error_message();

  // One broker cannot hold three replicas: Kafka says so.
  s = CreateTopic(UniqueTopic("admin-bad"), 1, {}, 3);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "INVALID_REPLICATION_FACTOR"))
      << s.error_message();

  s = CreateTopic(UniqueTopic("admin-bad"), 1, {{"retention.ms", "soon"}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "retention.ms")) << s.error_message();

  v1::TopicDescription d;
  s = DescribeTopic(UniqueTopic("admin-missing"), &d);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();

  v1::GroupDescription g;
  s = DescribeGroup(UniqueTopic("admin-no-group"), &g);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "does not exist")) << s.error_message();
  s = DescribeGroup("", &g);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  // The sidecar is still fine.
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AdminTest, ChangesNeedAllowChangesReadsAndDryRunsDoNot) {
  StartAdmin(/*allow_changes=*/false);
  const std::string topic = UniqueTopic("admin-ro");
  grpc::Status s = CreateTopic(topic, 2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "admin.allow_changes"))
      << s.error_message();
  v1::TopicDescription d;
  EXPECT_EQ(DescribeTopic(topic, &d).error_code(), grpc::StatusCode::NOT_FOUND);

  testing::CreateTopic(topic, 2);
  ASSERT_TRUE(DescribeTopic(topic, &d).ok());
  EXPECT_EQ(d.partitions_size(), 2);

  v1::DeleteTopicRequest del;
  del.set_topic(topic);
  v1::DeleteTopicResponse deleted;
  s = Call(admin_.get(), &v1::Admin::Stub::DeleteTopic, del, &deleted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "admin.allow_changes"));
  EXPECT_TRUE(DescribeTopic(topic, &d).ok()) << "the topic must still exist";

  const std::string group = UniqueTopic("admin-ro-group");
  CommitOffsets(group, topic, {{0, 0}, {1, 0}});
  Publish(topic, 10, 5);
  v1::ResetGroupOffsetsRequest reset;
  reset.set_group_id(group);
  reset.set_topic(topic);
  reset.set_latest(true);
  v1::ResetGroupOffsetsResponse resp;
  s = Reset(reset, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "admin.allow_changes"));
  reset.set_dry_run(true);
  s = Reset(reset, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(resp.applied());
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  ASSERT_EQ(resp.offsets_size(), 2);
  for (const v1::GroupOffsetReset& r : resp.offsets()) {
    EXPECT_EQ(r.previous_offset(), 0);
    EXPECT_EQ(r.new_offset(), high.at(r.partition()));
  }
  // Nothing moved in Kafka.
  EXPECT_EQ(CommittedOffsets(group, topic), (std::map<int32_t, int64_t>{{0, 0}, {1, 0}}));
}

TEST_F(AdminTest, GroupOffsetsAndLagAreWhatKafkaHolds) {
  StartAdmin(/*allow_changes=*/true);
  const std::string topic = UniqueTopic("admin-lag");
  testing::CreateTopic(topic, 3);
  Publish(topic, 60, 9);
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  const std::string group = UniqueTopic("admin-lag-group");
  // Partition 2 gets no committed offset: its lag is unknown, as Kafka's
  // own tool shows it.
  CommitOffsets(group, topic, {{0, high.at(0) / 2}, {1, high.at(1)}});

  v1::ListGroupsRequest list;
  v1::ListGroupsResponse groups;
  ASSERT_TRUE(Call(admin_.get(), &v1::Admin::Stub::ListGroups, list, &groups).ok());
  EXPECT_TRUE(std::any_of(groups.groups().begin(), groups.groups().end(),
                          [&](const v1::GroupSummary& g) {
                            return g.group_id() == group && g.state() == "Empty";
                          }));

  v1::GroupDescription g;
  grpc::Status s = DescribeGroup(group, &g);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(g.state(), "Empty");
  EXPECT_EQ(g.members_size(), 0);
  ASSERT_EQ(g.offsets_size(), 2);
  const std::map<int32_t, int64_t> committed = CommittedOffsets(group, topic);
  for (const v1::GroupPartitionOffset& o : g.offsets()) {
    EXPECT_EQ(o.topic(), topic);
    EXPECT_EQ(o.committed_offset(), committed.at(o.partition()));
    EXPECT_EQ(o.high_watermark(), high.at(o.partition()));
    EXPECT_EQ(o.lag(), high.at(o.partition()) - committed.at(o.partition()));
  }
  EXPECT_EQ(g.total_lag(), high.at(0) - high.at(0) / 2);

  // With a member: its assignment covers every partition, and the
  // partitions without a committed offset are listed with lag -1.
  Member member(stub_.get(), group, topic);
  ASSERT_TRUE(member.Next().has_value());
  s = DescribeGroup(group, &g);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(g.state(), "Stable");
  ASSERT_EQ(g.members_size(), 1);
  EXPECT_EQ(g.members(0).client_id(), "eventbus-sidecar");
  EXPECT_EQ(g.members(0).assignment_size(), 3);
  ASSERT_EQ(g.offsets_size(), 3);
  for (const v1::GroupPartitionOffset& o : g.offsets()) {
    EXPECT_EQ(o.member_id(), g.members(0).member_id());
    if (o.partition() == 2) {
      EXPECT_EQ(o.committed_offset(), -1);
      EXPECT_EQ(o.lag(), -1);
    }
  }
}

TEST_F(AdminTest, ResetMovesWhereTheNextSubscribeStartsAndWaitsForMembersToLeave) {
  StartAdmin(/*allow_changes=*/true);
  const std::string topic = UniqueTopic("admin-reset");
  testing::CreateTopic(topic, 1);
  Publish(topic, 5, 1);
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time between = absl::Now();
  absl::SleepFor(absl::Milliseconds(20));
  Publish(topic, 5, 1);
  const std::string group = UniqueTopic("admin-reset-group");
  CommitOffsets(group, topic, {{0, 10}});

  auto reset_to = [&](auto set) {
    WaitNoMembers(group);
    v1::ResetGroupOffsetsRequest req;
    req.set_group_id(group);
    req.set_topic(topic);
    set(req);
    v1::ResetGroupOffsetsResponse resp;
    grpc::Status s = Reset(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.applied());
    EXPECT_EQ(resp.offsets_size(), 1);
    return resp.offsets_size() == 1 ? resp.offsets(0).new_offset() : -2;
  };
  auto first_offset_of_new_member = [&]() -> int64_t {
    Member member(stub_.get(), group, topic);
    std::optional<v1::Delivery> d = member.Next();
    return d.has_value() ? d->offset() : -2;
  };

  EXPECT_EQ(reset_to([](auto& r) { r.set_offset(3); }), 3);
  EXPECT_EQ(CommittedOffsets(group, topic).at(0), 3);
  EXPECT_EQ(first_offset_of_new_member(), 3);

  EXPECT_EQ(reset_to([](auto& r) { r.set_earliest(true); }), 0);
  EXPECT_EQ(first_offset_of_new_member(), 0);

  EXPECT_EQ(reset_to([&](auto& r) {
              r.mutable_time()->set_seconds(absl::ToUnixSeconds(between));
              r.mutable_time()->set_nanos(static_cast<int32_t>(
                  absl::ToInt64Nanoseconds(between - absl::FromUnixSeconds(
                                                         absl::ToUnixSeconds(between)))));
            }),
            5);
  EXPECT_EQ(first_offset_of_new_member(), 5);

  // An offset past the end is brought to the end.
  EXPECT_EQ(reset_to([](auto& r) { r.set_offset(1000); }), 10);
  EXPECT_EQ(reset_to([](auto& r) { r.set_latest(true); }), 10);
  EXPECT_EQ(CommittedOffsets(group, topic).at(0), 10);

  // While a member is connected: refused, and nothing moves.
  {
    Member member(stub_.get(), group, topic);
    Publish(topic, 1, 1);
    ASSERT_TRUE(member.Next().has_value());
    v1::ResetGroupOffsetsRequest req;
    req.set_group_id(group);
    req.set_topic(topic);
    req.set_earliest(true);
    v1::ResetGroupOffsetsResponse resp;
    grpc::Status s = Reset(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "1 member"))
        << s.error_message();
    EXPECT_EQ(CommittedOffsets(group, topic).at(0), 10);
  }

  // Bad requests.
  v1::ResetGroupOffsetsRequest req;
  req.set_group_id(group);
  req.set_topic(topic);
  v1::ResetGroupOffsetsResponse resp;
  grpc::Status s = Reset(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "earliest, latest, time or offset"))
      << s.error_message();
  req.set_earliest(true);
  req.add_partitions(4);
  s = Reset(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "no partition 4")) << s.error_message();
}

// Without Kafka: a call gets DEADLINE_EXCEEDED at its deadline, and a call
// still waiting when the sidecar shuts down ends at once with UNAVAILABLE,
// so administration never holds up a shutdown.
TEST_F(AdminTest, CallsWithoutKafkaEndAtTheirDeadlineOrAtShutdown) {
  StartSidecar([](server::Config& c) { c.brokers = "127.0.0.1:1"; });
  admin_ = v1::Admin::NewStub(channel_);
  v1::ListTopicsResponse topics;
  absl::Time start = absl::Now();
  grpc::Status s = Call(admin_.get(), &v1::Admin::Stub::ListTopics,
                        v1::ListTopicsRequest(), &topics, absl::Seconds(1));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  grpc::Status waiting;
  std::thread call([&] {
    v1::DescribeGroupRequest req;
    req.set_group_id("nobody");
    v1::GroupDescription resp;
    waiting = Call(admin_.get(), &v1::Admin::Stub::DescribeGroup, req, &resp,
                   absl::Seconds(60));
  });
  absl::SleepFor(absl::Milliseconds(500));  // the call is waiting for Kafka
  start = absl::Now();
  sidecar_->Shutdown().IgnoreError();
  call.join();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(waiting.error_code(), grpc::StatusCode::UNAVAILABLE) << waiting.error_message();
  EXPECT_TRUE(absl::StrContains(waiting.error_message(), "shutting down"))
      << waiting.error_message();
  EXPECT_LT(took, absl::Seconds(5)) << "shutdown waited for the Admin call";
}

}  // namespace
}  // namespace eventbus::testing
