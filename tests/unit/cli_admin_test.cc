// `eventbus topics` and `eventbus groups` (client/cli/admin_commands.h)
// against a fake Admin service on 127.0.0.1:0 that returns canned responses
// and records what it was asked; the table formatter and the flag parser
// they share with `publish` and `subscribe`.

#include "client/cli/admin_commands.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/flags.h"
#include "client/cli/table.h"
#include "eventbus/v1/admin.grpc.pb.h"

namespace eventbus::cli {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- Table -------------------------------------------------------------------

TEST(CliTableTest, PadsColumnsToTheWidestCellTwoSpacesApart) {
  Table table({"TOPIC", "PARTITIONS", "REPLICATION"});
  table.AddRow({"__consumer_offsets", "50", "1"});
  table.AddRow({"orders", "6", "3"});
  EXPECT_EQ(table.Render(),
            "TOPIC               PARTITIONS  REPLICATION\n"
            "__consumer_offsets  50          1\n"
            "orders              6           3\n");
}

TEST(CliTableTest, NoLineEndsInSpaces) {
  Table table({"MEMBER", "CLIENT", "HOST"});
  table.AddRow({"m-1", "a-long-client-id", ""});
  table.AddRow({"m-2"});  // short rows are padded with empty cells
  table.AddRow({"", "", ""});
  EXPECT_EQ(table.Render(),
            "MEMBER  CLIENT            HOST\n"
            "m-1     a-long-client-id\n"
            "m-2\n"
            "\n");
}

TEST(CliTableTest, AHeaderAloneIsOneLine) {
  EXPECT_EQ(Table({"GROUP", "STATE"}).Render(), "GROUP  STATE\n");
}

TEST(CliTableTest, CountsUtf8CharactersNotBytes) {
  Table table({"CONFIG", "VALUE", "SOURCE"});
  table.AddRow({"note", "\xC3\xA9t\xC3\xA9", "DYNAMIC_TOPIC_CONFIG"});  // "été"
  EXPECT_EQ(table.Render(),
            "CONFIG  VALUE  SOURCE\n"
            "note    \xC3\xA9t\xC3\xA9    DYNAMIC_TOPIC_CONFIG\n");
}

// --- Flags -------------------------------------------------------------------

const std::map<std::string, FlagSpec> kSpecs = {
    {"address", {true, false}},
    {"partition", {true, true}},
    {"dry-run", {false, false}},
};

TEST(CliFlagsTest, WithoutPositionalsTheFirstNonFlagIsTheError) {
  // publish and subscribe take none: the error names the argument even when
  // a bad flag follows it, as before positionals existed.
  absl::StatusOr<ParsedFlags> parsed =
      ParseFlags({"--address", "a", "x", "--bogus"}, kSpecs);
  EXPECT_EQ(parsed.status().message(), "unexpected argument 'x'");
  EXPECT_EQ(ParseFlags({"--"}, kSpecs).status().message(),
            "unexpected argument '--'");
}

TEST(CliFlagsTest, PositionalsAnywhereUpToTheLimit) {
  absl::StatusOr<ParsedFlags> parsed = ParseFlags(
      {"--partition", "1", "billing", "--dry-run", "--partition=2"}, kSpecs,
      /*max_positional=*/1);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positional, ElementsAre("billing"));
  EXPECT_THAT(parsed->GetAll("partition"), ElementsAre("1", "2"));
  EXPECT_TRUE(parsed->Has("dry-run"));
  EXPECT_THAT(parsed->GetAll("address"), IsEmpty());

  EXPECT_EQ(ParseFlags({"a", "b"}, kSpecs, 1).status().message(),
            "unexpected argument 'b'");
}

TEST(CliFlagsTest, DoubleDashEndsTheFlagsWhenPositionalsAreAllowed) {
  absl::StatusOr<ParsedFlags> parsed =
      ParseFlags({"--dry-run", "--", "--odd-topic"}, kSpecs, 1);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positional, ElementsAre("--odd-topic"));
}

TEST(CliFlagsTest, ErrorsNameTheFlag) {
  EXPECT_EQ(ParseFlags({"--bogus"}, kSpecs).status().message(),
            "unknown flag --bogus");
  EXPECT_EQ(ParseFlags({"--address"}, kSpecs).status().message(),
            "flag --address needs a value");
  EXPECT_EQ(ParseFlags({"--dry-run=yes"}, kSpecs).status().message(),
            "flag --dry-run takes no value");
  EXPECT_EQ(ParseFlags({"--address", "a", "--address=b"}, kSpecs)
                .status()
                .message(),
            "flag --address was given twice");
}

// --- The admin commands against a fake service -------------------------------

// Answers every call with the canned response of its type (or the canned
// failure), and records the last request and the deadline the server saw.
class FakeAdmin final : public v1::Admin::Service {
 public:
  void Respond(const google::protobuf::Message& response) {
    absl::MutexLock lock(&mu_);
    response_.reset(response.New());
    response_->CopyFrom(response);
  }
  void Fail(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }

  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  absl::Time deadline() const {
    absl::MutexLock lock(&mu_);
    return deadline_;
  }
  // The last request, which must be a T.
  template <typename T>
  T LastRequest() const {
    absl::MutexLock lock(&mu_);
    T out;
    if (request_ == nullptr ||
        request_->GetDescriptor() != out.GetDescriptor()) {
      ADD_FAILURE() << "the last request is not a "
                    << out.GetDescriptor()->full_name();
      return out;
    }
    out.CopyFrom(*request_);
    return out;
  }

  grpc::Status CreateTopic(grpc::ServerContext* c,
                           const v1::CreateTopicRequest* request,
                           v1::CreateTopicResponse* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status ListTopics(grpc::ServerContext* c,
                          const v1::ListTopicsRequest* request,
                          v1::ListTopicsResponse* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status DescribeTopic(grpc::ServerContext* c,
                             const v1::DescribeTopicRequest* request,
                             v1::TopicDescription* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status DeleteTopic(grpc::ServerContext* c,
                           const v1::DeleteTopicRequest* request,
                           v1::DeleteTopicResponse* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status ListGroups(grpc::ServerContext* c,
                          const v1::ListGroupsRequest* request,
                          v1::ListGroupsResponse* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status DescribeGroup(grpc::ServerContext* c,
                             const v1::DescribeGroupRequest* request,
                             v1::GroupDescription* response) override {
    return Answer(c, *request, response);
  }
  grpc::Status ResetGroupOffsets(
      grpc::ServerContext* c, const v1::ResetGroupOffsetsRequest* request,
      v1::ResetGroupOffsetsResponse* response) override {
    return Answer(c, *request, response);
  }

 private:
  grpc::Status Answer(grpc::ServerContext* context,
                      const google::protobuf::Message& request,
                      google::protobuf::Message* response) {
    absl::MutexLock lock(&mu_);
    ++calls_;
    deadline_ = absl::FromChrono(context->deadline());
    request_.reset(request.New());
    request_->CopyFrom(request);
    if (!failure_.ok()) return failure_;
    if (response_ == nullptr ||
        response_->GetDescriptor() != response->GetDescriptor()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "the test set no response of this type");
    }
    response->CopyFrom(*response_);
    return grpc::Status::OK;
  }

  mutable absl::Mutex mu_;
  std::unique_ptr<google::protobuf::Message> response_ ABSL_GUARDED_BY(mu_);
  grpc::Status failure_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<google::protobuf::Message> request_ ABSL_GUARDED_BY(mu_);
};

struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};

v1::TopicDescription OrdersDescription() {
  v1::TopicDescription d;
  d.set_name("orders");
  d.set_topic_id("q5Zd1IvURkOkzVPkSmIqhg");
  v1::TopicPartitionDescription* p0 = d.add_partitions();
  p0->set_partition(0);
  p0->set_leader(1);
  for (int r : {1, 2, 3}) p0->add_replicas(r);
  for (int r : {1, 2, 3}) p0->add_isr(r);
  p0->set_low_watermark(0);
  p0->set_high_watermark(1200);
  v1::TopicPartitionDescription* p1 = d.add_partitions();
  p1->set_partition(1);
  p1->set_leader(-1);  // offline: no leader, no in-sync replica
  for (int r : {2, 3, 1}) p1->add_replicas(r);
  p1->set_low_watermark(5);
  p1->set_high_watermark(17);
  v1::TopicConfig* c = d.add_configs();
  c->set_name("cleanup.policy");
  c->set_value("delete");
  c->set_source("DEFAULT_CONFIG");
  c->set_is_default(true);
  c = d.add_configs();
  c->set_name("retention.ms");
  c->set_value("86400000");
  c->set_source("DYNAMIC_TOPIC_CONFIG");
  c = d.add_configs();
  c->set_name("secret.key");
  c->set_source("DYNAMIC_TOPIC_CONFIG");
  c->set_sensitive(true);
  return d;
}

v1::GroupDescription BillingDescription() {
  v1::GroupDescription d;
  d.set_group_id("billing");
  d.set_state("Stable");
  d.set_partition_assignor("cooperative-sticky");
  d.set_coordinator(1);
  v1::GroupMember* m = d.add_members();
  m->set_member_id("eventbus-sidecar-1b2c");
  m->set_client_id("eventbus-sidecar");
  m->set_host("/127.0.0.1");
  for (int p : {0, 1}) {
    v1::GroupTopicPartition* tp = m->add_assignment();
    tp->set_topic("orders");
    tp->set_partition(p);
  }
  m = d.add_members();
  m->set_member_id("eventbus-sidecar-9f8e");
  m->set_client_id("eventbus-sidecar");
  m->set_host("/10.0.0.7");
  v1::GroupTopicPartition* tp = m->add_assignment();
  tp->set_topic("orders");
  tp->set_partition(2);
  auto offset = [&d](const std::string& topic, int partition, int64_t committed,
                     int64_t end, int64_t lag, const std::string& member) {
    v1::GroupPartitionOffset* o = d.add_offsets();
    o->set_topic(topic);
    o->set_partition(partition);
    o->set_committed_offset(committed);
    o->set_high_watermark(end);
    o->set_lag(lag);
    o->set_member_id(member);
  };
  offset("orders", 0, 40, 42, 2, "eventbus-sidecar-1b2c");
  offset("orders", 1, -1, 7, -1, "eventbus-sidecar-1b2c");
  offset("orders", 2, 10, 10, 0, "eventbus-sidecar-9f8e");
  offset("payments", 0, 3, 9, 6, "");
  d.set_total_lag(8);
  return d;
}

class CliAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
  }

  // `eventbus topics ARGS --address <the fake>`.
  RunResult Topics(std::vector<std::string> args) {
    return Run(&RunTopics, WithAddress(std::move(args)));
  }
  RunResult Groups(std::vector<std::string> args) {
    return Run(&RunGroups, WithAddress(std::move(args)));
  }

  static RunResult Run(int (*command)(const std::vector<std::string>&,
                                      std::ostream&, std::ostream&),
                       const std::vector<std::string>& args) {
    std::ostringstream out;
    std::ostringstream err;
    const int code = command(args, out, err);
    return {code, out.str(), err.str()};
  }

  std::vector<std::string> WithAddress(std::vector<std::string> args) const {
    args.push_back("--address");
    args.push_back(address_);
    return args;
  }

  FakeAdmin fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(CliAdminTest, TopicsListPrintsATable) {
  v1::ListTopicsResponse response;
  for (auto [name, partitions, replication] :
       {std::tuple("__consumer_offsets", 50, 1), std::tuple("orders", 6, 3)}) {
    v1::TopicSummary* t = response.add_topics();
    t->set_name(name);
    t->set_partitions(partitions);
    t->set_replication_factor(replication);
  }
  fake_.Respond(response);

  RunResult r = Topics({"list", "--internal"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "TOPIC               PARTITIONS  REPLICATION\n"
            "__consumer_offsets  50          1\n"
            "orders              6           3\n");
  EXPECT_TRUE(fake_.LastRequest<v1::ListTopicsRequest>().include_internal());

  EXPECT_EQ(Topics({"list"}).exit_code, 0);
  EXPECT_FALSE(fake_.LastRequest<v1::ListTopicsRequest>().include_internal());
}

TEST_F(CliAdminTest, TopicsDescribeShowsPartitionsAndTheConfigsSetOnTheTopic) {
  fake_.Respond(OrdersDescription());
  RunResult r = Topics({"describe", "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Topic: orders  id: q5Zd1IvURkOkzVPkSmIqhg  partitions: 2\n"
            "\n"
            "PARTITION  LEADER  REPLICAS  ISR    LOW  HIGH\n"
            "0          1       1,2,3     1,2,3  0    1200\n"
            "1          none    2,3,1     -      5    17\n"
            "\n"
            "CONFIG        VALUE        SOURCE\n"
            "retention.ms  86400000     DYNAMIC_TOPIC_CONFIG\n"
            "secret.key    (sensitive)  DYNAMIC_TOPIC_CONFIG\n");
  EXPECT_EQ(fake_.LastRequest<v1::DescribeTopicRequest>().topic(), "orders");
}

TEST_F(CliAdminTest, TopicsDescribeAllConfigsShowsTheDefaultsToo) {
  fake_.Respond(OrdersDescription());
  RunResult r = Topics({"describe", "--all-configs", "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              HasSubstr("\n\n"
                        "CONFIG          VALUE        SOURCE\n"
                        "cleanup.policy  delete       DEFAULT_CONFIG\n"
                        "retention.ms    86400000     DYNAMIC_TOPIC_CONFIG\n"
                        "secret.key      (sensitive)  DYNAMIC_TOPIC_CONFIG\n"));
}

TEST_F(CliAdminTest, TopicsDescribeSaysWhenNoConfigIsSet) {
  v1::TopicDescription d = OrdersDescription();
  d.mutable_configs()->DeleteSubrange(1, 2);  // only the default is left
  fake_.Respond(d);
  RunResult r = Topics({"describe", "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1          none    2,3,1     -      5    17\n"
                               "\n"
                               "no configs set on the topic\n"));
  EXPECT_THAT(r.out, testing::EndsWith("\nno configs set on the topic\n"));
}

TEST_F(CliAdminTest, ATopicNamedLikeAFlagFollowsDoubleDash) {
  fake_.Respond(v1::DeleteTopicResponse());
  RunResult r = Run(&RunTopics, {"delete", "--address", address_, "--", "--odd"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted topic --odd\n");
  EXPECT_EQ(fake_.LastRequest<v1::DeleteTopicRequest>().topic(), "--odd");
}

TEST_F(CliAdminTest, TopicsCreateSendsPartitionsReplicationAndConfigs) {
  v1::CreateTopicResponse response;
  response.set_topic("orders");
  fake_.Respond(response);
  RunResult r = Topics({"create", "orders", "--partitions", "6",
                        "--replication-factor=3", "--config",
                        "retention.ms=86400000", "--config",
                        "cleanup.policy=compact"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "created topic orders\n");
  v1::CreateTopicRequest request = fake_.LastRequest<v1::CreateTopicRequest>();
  EXPECT_EQ(request.topic(), "orders");
  EXPECT_EQ(request.partitions(), 6);
  EXPECT_EQ(request.replication_factor(), 3);
  ASSERT_EQ(request.configs_size(), 2);
  EXPECT_EQ(request.configs().at("retention.ms"), "86400000");
  EXPECT_EQ(request.configs().at("cleanup.policy"), "compact");
}

TEST_F(CliAdminTest, TopicsCreateLeavesDefaultsToTheBroker) {
  fake_.Respond(v1::CreateTopicResponse());
  EXPECT_EQ(Topics({"create", "orders"}).exit_code, 0);
  v1::CreateTopicRequest request = fake_.LastRequest<v1::CreateTopicRequest>();
  EXPECT_EQ(request.partitions(), 0);
  EXPECT_EQ(request.replication_factor(), 0);
  EXPECT_EQ(request.configs_size(), 0);
}

TEST_F(CliAdminTest, TopicsDelete) {
  fake_.Respond(v1::DeleteTopicResponse());
  RunResult r = Topics({"delete", "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted topic orders\n");
  EXPECT_EQ(fake_.LastRequest<v1::DeleteTopicRequest>().topic(), "orders");
}

TEST_F(CliAdminTest, GroupsListPrintsATable) {
  v1::ListGroupsResponse response;
  v1::GroupSummary* g = response.add_groups();
  g->set_group_id("audit");
  g->set_state("Empty");
  g = response.add_groups();
  g->set_group_id("billing");
  g->set_state("Stable");
  fake_.Respond(response);
  RunResult r = Groups({"list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "GROUP    STATE\n"
            "audit    Empty\n"
            "billing  Stable\n");
  EXPECT_EQ(fake_.calls(), 1);
}

TEST_F(CliAdminTest, GroupsDescribeShowsOffsetsLagAndMembers) {
  fake_.Respond(BillingDescription());
  RunResult r = Groups({"describe", "billing"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "Group: billing  state: Stable  assignor: cooperative-sticky  "
      "coordinator: 1  members: 2\n"
      "\n"
      "TOPIC     PARTITION  COMMITTED  END  LAG  MEMBER\n"
      "orders    0          40         42   2    eventbus-sidecar-1b2c\n"
      "orders    1          -          7    -    eventbus-sidecar-1b2c\n"
      "orders    2          10         10   0    eventbus-sidecar-9f8e\n"
      "payments  0          3          9    6    -\n"
      "Total lag: 8\n"
      "\n"
      "MEMBER                 CLIENT            HOST        PARTITIONS\n"
      "eventbus-sidecar-1b2c  eventbus-sidecar  /127.0.0.1  orders:0,orders:1\n"
      "eventbus-sidecar-9f8e  eventbus-sidecar  /10.0.0.7   orders:2\n");
  EXPECT_EQ(fake_.LastRequest<v1::DescribeGroupRequest>().group_id(),
            "billing");
}

TEST_F(CliAdminTest, GroupsDescribeWithoutMembersEndsWithTheTotalLag) {
  v1::GroupDescription d = BillingDescription();
  d.set_state("Empty");
  d.clear_partition_assignor();
  d.clear_members();
  d.mutable_offsets()->DeleteSubrange(0, 3);
  d.set_total_lag(6);
  fake_.Respond(d);
  RunResult r = Groups({"describe", "billing"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Group: billing  state: Empty  assignor: -  coordinator: 1  "
            "members: 0\n"
            "\n"
            "TOPIC     PARTITION  COMMITTED  END  LAG  MEMBER\n"
            "payments  0          3          9    6    -\n"
            "Total lag: 6\n");
}

TEST_F(CliAdminTest, GroupsResetDryRunToAnOffset) {
  v1::ResetGroupOffsetsResponse response;
  v1::GroupOffsetReset* o = response.add_offsets();
  o->set_topic("orders");
  o->set_partition(1);
  o->set_previous_offset(40);
  o->set_new_offset(5);
  response.set_applied(false);
  fake_.Respond(response);

  RunResult r = Groups({"reset", "billing", "--topic", "orders", "--to-offset",
                        "5", "--partition", "1", "--dry-run"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "TOPIC   PARTITION  PREVIOUS  NEW\n"
            "orders  1          40        5\n"
            "dry run: nothing committed\n");
  v1::ResetGroupOffsetsRequest request =
      fake_.LastRequest<v1::ResetGroupOffsetsRequest>();
  EXPECT_EQ(request.group_id(), "billing");
  EXPECT_EQ(request.topic(), "orders");
  EXPECT_THAT(request.partitions(), ElementsAre(1));
  ASSERT_EQ(request.to_case(), v1::ResetGroupOffsetsRequest::kOffset);
  EXPECT_EQ(request.offset(), 5);
  EXPECT_TRUE(request.dry_run());
}

TEST_F(CliAdminTest, GroupsResetToEarliestCommits) {
  v1::ResetGroupOffsetsResponse response;
  for (auto [partition, previous, next] :
       {std::tuple(0, -1, 0), std::tuple(1, 40, 3)}) {
    v1::GroupOffsetReset* o = response.add_offsets();
    o->set_topic("orders");
    o->set_partition(partition);
    o->set_previous_offset(previous);
    o->set_new_offset(next);
  }
  response.set_applied(true);
  fake_.Respond(response);

  RunResult r =
      Groups({"reset", "billing", "--topic", "orders", "--to-earliest"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "TOPIC   PARTITION  PREVIOUS  NEW\n"
            "orders  0          -         0\n"
            "orders  1          40        3\n"
            "committed new offsets for group billing\n");
  v1::ResetGroupOffsetsRequest request =
      fake_.LastRequest<v1::ResetGroupOffsetsRequest>();
  EXPECT_EQ(request.to_case(), v1::ResetGroupOffsetsRequest::kEarliest);
  EXPECT_THAT(request.partitions(), IsEmpty());
  EXPECT_FALSE(request.dry_run());

  EXPECT_EQ(Groups({"reset", "billing", "--topic", "orders", "--to-latest"})
                .exit_code,
            0);
  EXPECT_EQ(fake_.LastRequest<v1::ResetGroupOffsetsRequest>().to_case(),
            v1::ResetGroupOffsetsRequest::kLatest);
}

TEST_F(CliAdminTest, GroupsResetToATimeSendsItInUtc) {
  fake_.Respond(v1::ResetGroupOffsetsResponse());
  RunResult r = Groups({"reset", "billing", "--topic", "orders", "--to-time",
                        "2025-01-02T03:04:05.5+01:00"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  v1::ResetGroupOffsetsRequest request =
      fake_.LastRequest<v1::ResetGroupOffsetsRequest>();
  ASSERT_EQ(request.to_case(), v1::ResetGroupOffsetsRequest::kTime);
  EXPECT_EQ(request.time().seconds(), 1735783445);  // 2025-01-02T02:04:05Z
  EXPECT_EQ(request.time().nanos(), 500000000);
}

TEST_F(CliAdminTest, AFailedCallExitsOneWithItsCodeAndMessage) {
  fake_.Fail(grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "topic 'nope' does not exist"));
  RunResult r = Topics({"describe", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "eventbus topics describe: NOT_FOUND: topic 'nope' does not "
            "exist\n");

  fake_.Fail(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "group 'billing' has 2 members"));
  r = Groups({"reset", "billing", "--topic", "orders", "--to-latest"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "eventbus groups reset: FAILED_PRECONDITION: group 'billing' has "
            "2 members\n");
}

TEST_F(CliAdminTest, NoSidecarIsUnavailable) {
  const std::string address = address_;
  server_->Shutdown(absl::ToChronoTime(absl::Now()));
  server_.reset();
  RunResult r = Run(&RunGroups, {"list", "--address", address});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, testing::StartsWith("eventbus groups list: UNAVAILABLE: "));
}

TEST_F(CliAdminTest, JsonPrintsTheResponseAsGrpcurlDoes) {
  const v1::TopicDescription canned = OrdersDescription();
  fake_.Respond(canned);
  RunResult r = Topics({"describe", "orders", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_THAT(r.out, testing::EndsWith("}\n"));
  EXPECT_THAT(r.out, testing::Not(testing::EndsWith("\n\n")));
  // Field names as in the .proto, int64 as strings, defaults printed.
  EXPECT_THAT(r.out, HasSubstr(R"("high_watermark": "1200")"));
  EXPECT_THAT(r.out, HasSubstr(R"("internal": false)"));
  v1::TopicDescription parsed;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, canned))
      << parsed.DebugString();

  const v1::GroupDescription group = BillingDescription();
  fake_.Respond(group);
  r = Groups({"describe", "billing", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  v1::GroupDescription parsed_group;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(r.out, &parsed_group).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed_group, group));
}

TEST_F(CliAdminTest, TheTimeoutIsTheCallsDeadline) {
  fake_.Respond(v1::ListGroupsResponse());
  absl::Time before = absl::Now();
  ASSERT_EQ(Groups({"list", "--timeout", "5s"}).exit_code, 0);
  absl::Time after = absl::Now();
  // The server's deadline is the client's, give or take the clock readings
  // on either side and grpc-timeout's rounding up.
  EXPECT_GE(fake_.deadline(), before + absl::Seconds(4));
  EXPECT_LE(fake_.deadline(), after + absl::Seconds(6));

  before = absl::Now();
  ASSERT_EQ(Groups({"list"}).exit_code, 0);
  after = absl::Now();
  EXPECT_GE(fake_.deadline(), before + absl::Seconds(29));
  EXPECT_LE(fake_.deadline(), after + absl::Seconds(31));
}

// --- Usage errors: exit 2, the message on stderr, and no call ----------------

TEST_F(CliAdminTest, UsageErrorsNameTheProblemAndCallNothing) {
  struct Case {
    int (*command)(const std::vector<std::string>&, std::ostream&,
                   std::ostream&);
    std::vector<std::string> args;
    std::string err;
  };
  const std::vector<Case> cases = {
      {&RunTopics, {"list"},
       "eventbus topics list: flag --address is required\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunTopics, {},
       "eventbus topics: a subcommand is required: list, describe, create "
       "or delete\nRun 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"frobnicate"}),
       "eventbus topics: unknown subcommand 'frobnicate' (list, describe, "
       "create or delete)\nRun 'eventbus topics --help' for usage.\n"},
      {&RunGroups, {"rebalance"},
       "eventbus groups: unknown subcommand 'rebalance' (list, describe or "
       "reset)\nRun 'eventbus groups --help' for usage.\n"},
      {&RunTopics, WithAddress({"describe"}),
       "eventbus topics describe: TOPIC is required\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"describe", "a", "b"}),
       "eventbus topics describe: unexpected argument 'b'\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"list", "orders"}),
       "eventbus topics list: unexpected argument 'orders'\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"list", "--partitions", "3"}),
       "eventbus topics list: unknown flag --partitions\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"list", "--timeout", "soon"}),
       "eventbus topics list: flag --timeout: 'soon' is not a positive "
       "duration (e.g. 10s, 2m)\nRun 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"create", "t", "--partitions", "0"}),
       "eventbus topics create: flag --partitions: '0' is not a positive "
       "integer\nRun 'eventbus topics --help' for usage.\n"},
      {&RunTopics, WithAddress({"create", "t", "--config", "retention.ms"}),
       "eventbus topics create: flag --config: 'retention.ms' is not "
       "NAME=VALUE\nRun 'eventbus topics --help' for usage.\n"},
      {&RunTopics,
       WithAddress({"create", "t", "--config", "a=1", "--config", "a=2"}),
       "eventbus topics create: flag --config: 'a' is given twice\n"
       "Run 'eventbus topics --help' for usage.\n"},
      {&RunGroups, WithAddress({"describe"}),
       "eventbus groups describe: GROUP is required\n"
       "Run 'eventbus groups --help' for usage.\n"},
      {&RunGroups, WithAddress({"reset", "g", "--to-earliest"}),
       "eventbus groups reset: flag --topic is required\n"
       "Run 'eventbus groups --help' for usage.\n"},
      {&RunGroups, WithAddress({"reset", "g", "--topic", "t"}),
       "eventbus groups reset: one of --to-earliest, --to-latest, --to-time "
       "or --to-offset is required\nRun 'eventbus groups --help' for usage.\n"},
      {&RunGroups,
       WithAddress({"reset", "g", "--topic", "t", "--to-offset", "5",
                    "--to-earliest"}),
       "eventbus groups reset: flags --to-earliest and --to-offset cannot be "
       "combined: give one of --to-earliest, --to-latest, --to-time or "
       "--to-offset\nRun 'eventbus groups --help' for usage.\n"},
      {&RunGroups,
       WithAddress({"reset", "g", "--topic", "t", "--to-time", "yesterday"}),
       "eventbus groups reset: flag --to-time: 'yesterday' is not an RFC "
       "3339 time (e.g. 2025-01-01T12:00:00Z)\n"
       "Run 'eventbus groups --help' for usage.\n"},
      {&RunGroups,
       WithAddress({"reset", "g", "--topic", "t", "--to-time", "2025-01-01"}),
       "eventbus groups reset: flag --to-time: '2025-01-01' is not an RFC "
       "3339 time (e.g. 2025-01-01T12:00:00Z)\n"
       "Run 'eventbus groups --help' for usage.\n"},
      {&RunGroups,
       WithAddress({"reset", "g", "--topic", "t", "--to-offset", "-2"}),
       "eventbus groups reset: flag --to-offset: '-2' is not an offset (an "
       "integer >= 0)\nRun 'eventbus groups --help' for usage.\n"},
      {&RunGroups,
       WithAddress({"reset", "g", "--topic", "t", "--to-latest",
                    "--partition", "one"}),
       "eventbus groups reset: flag --partition: 'one' is not a partition "
       "number (an integer >= 0)\nRun 'eventbus groups --help' for usage.\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.args));
    RunResult r = Run(c.command, c.args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.err, c.err);
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CliAdminTest, HelpPrintsTheUsageOnStdout) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"help"}, {"describe", "--help"}}) {
    RunResult r = Run(&RunTopics, args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.err, "");
    EXPECT_THAT(r.out, HasSubstr("eventbus topics create TOPIC"));
    EXPECT_THAT(r.out, HasSubstr("--replication-factor N"));
  }
  RunResult r = Run(&RunGroups, {"reset", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--to-offset N"));
  EXPECT_EQ(fake_.calls(), 0);
}

}  // namespace
}  // namespace eventbus::cli
