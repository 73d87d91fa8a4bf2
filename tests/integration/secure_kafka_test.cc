// The sidecar against a secured Kafka: a real broker with a SASL_SSL
// listener (SCRAM-SHA-512 over TLS, a CA and broker certificate made with
// openssl and keytool) and ACLs (KRaft's StandardAuthorizer), started by
// deploy/kafka/kafka.sh with LOCAL_KAFKA_SECURE=1 in build/kafka-secure
// (reused when it runs; deploy/test.sh stops it). The user "app" may use
// topics and groups whose names start with "secure-ok-", nothing else.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "kafka/admin.h"
#include "kafka/rdkafka_handles.h"
#include "kafka/rdkafka_producer.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_process.h"

namespace eventbus::testing {
namespace {

const std::string kDir = absl::StrCat(EVENTBUS_SOURCE_DIR, "/build/kafka-secure");

std::string ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

// Grants "app" every operation on topics and groups named "secure-ok-*",
// over the PLAINTEXT listener (whose principal is a super user).
absl::Status GrantApp(const std::string& plaintext) {
  absl::StatusOr<kafka::RdKafkaConfPtr> conf =
      kafka::MakeRdKafkaConf({{"bootstrap.servers", plaintext}});
  if (!conf.ok()) return conf.status();
  char errstr[512];
  kafka::RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf->release(), errstr,
                                    sizeof(errstr)));
  if (rk == nullptr) return absl::InternalError(errstr);
  rd_kafka_AclBinding_t* acls[2];
  int i = 0;
  for (rd_kafka_ResourceType_t type : {RD_KAFKA_RESOURCE_TOPIC, RD_KAFKA_RESOURCE_GROUP}) {
    acls[i++] = rd_kafka_AclBinding_new(
        type, "secure-ok-", RD_KAFKA_RESOURCE_PATTERN_PREFIXED, "User:app", "*",
        RD_KAFKA_ACL_OPERATION_ALL, RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, errstr,
        sizeof(errstr));
  }
  kafka::RdKafkaQueuePtr queue(rd_kafka_queue_new(rk.get()));
  rd_kafka_CreateAcls(rk.get(), acls, 2, nullptr, queue.get());
  kafka::RdKafkaEventPtr event(rd_kafka_queue_poll(queue.get(), 30000));
  rd_kafka_AclBinding_destroy_array(acls, 2);
  if (event == nullptr) return absl::DeadlineExceededError("CreateAcls: no answer");
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(rd_kafka_event_error_string(event.get()));
  }
  size_t n = 0;
  const rd_kafka_acl_result_t** results =
      rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(event.get()), &n);
  for (size_t r = 0; r < n; ++r) {
    if (const rd_kafka_error_t* e = rd_kafka_acl_result_error(results[r]); e != nullptr) {
      return absl::InternalError(rd_kafka_error_string(e));
    }
  }
  return absl::OkStatus();
}

class SecureKafkaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string command = absl::StrCat(
        "LOCAL_KAFKA_SECURE=1 '", EVENTBUS_SOURCE_DIR, "/deploy/kafka/kafka.sh' start '",
        kDir, "' >/dev/null");
    if (std::system(command.c_str()) != 0) {
      setup_error_ = absl::StrCat("the secured Kafka did not start (", command,
                                  "); its log: ", kDir, "/kafka.log");
      return;
    }
    plaintext_ = ReadTrimmed(kDir + "/bootstrap");
    sasl_ssl_ = ReadTrimmed(kDir + "/bootstrap-sasl-ssl");
    if (sasl_ssl_.empty()) {
      setup_error_ = absl::StrCat(kDir, " runs without a SASL_SSL listener: stop it (",
                                  "deploy/kafka/kafka.sh stop ", kDir, ") and run again");
      return;
    }
    if (absl::Status s = GrantApp(plaintext_); !s.ok()) {
      setup_error_ = absl::StrCat("granting ACLs: ", s.ToString());
    }
  }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  // The sidecar's flags for user `user` with `password` over SASL_SSL.
  static std::vector<std::string> Flags(const std::string& address,
                                        const std::string& password = "app-secret",
                                        const std::string& user = "app") {
    return {absl::StrCat("--kafka.brokers=", sasl_ssl_),
            absl::StrCat("--server.listen=", address),
            "--kafka.security.protocol=SASL_SSL",
            "--kafka.sasl.mechanism=SCRAM-SHA-512",
            absl::StrCat("--kafka.sasl.username=", user),
            absl::StrCat("--kafka.sasl.password=", password),
            absl::StrCat("--kafka.ssl.ca.location=", kDir, "/tls/ca.crt"),
            // A member that leaves is noticed quickly.
            "--kafka.consumer.session.timeout.ms=6000"};
  }

  // Creates `topic` (1 partition) over the PLAINTEXT listener.
  static void CreateSecureTopic(const std::string& topic) {
    kafka::Admin admin({{"bootstrap.servers", plaintext_}});
    absl::Status s = admin.CreateTopic({.name = topic, .partitions = 1}, absl::Seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }

  static grpc::Status Publish(v1::EventBus::Stub* stub, const std::string& topic,
                              const std::string& data, v1::PublishResponse* resp) {
    v1::PublishRequest req;
    req.set_topic(topic);
    req.mutable_event()->set_type("com.example.secure");
    req.mutable_event()->set_data(data);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stub->Publish(&ctx, req, resp);
  }

  static inline std::string setup_error_;
  static inline std::string plaintext_;
  static inline std::string sasl_ssl_;
};

TEST_F(SecureKafkaTest, PublishAndSubscribeOverSaslSsl) {
  const std::string address = SidecarSocketAddress();
  SidecarProcess sidecar(Flags(address));
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30)))
      << "not SERVING over SASL_SSL:\n" << sidecar.Log();
  auto stub = v1::EventBus::NewStub(channel);
  const std::string topic = UniqueTopic("secure-ok-topic");
  CreateSecureTopic(topic);

  v1::PublishResponse published;
  grpc::Status s = Publish(stub.get(), topic, "over SASL_SSL", &published);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GE(published.offset(), 0);

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest req;
  req.mutable_subscription()->set_group(UniqueTopic("secure-ok-group"));
  req.mutable_subscription()->add_topics(topic);
  req.mutable_subscription()->set_start_position(v1::START_POSITION_EARLIEST);
  ASSERT_TRUE(stream->Write(req));
  v1::SubscribeResponse resp;
  bool got = false;
  while (!got && stream->Read(&resp)) {
    for (const v1::Delivery& d : resp.deliveries()) {
      EXPECT_EQ(d.event().id(), published.event_id());
      EXPECT_EQ(d.event().data(), "over SASL_SSL");
      EXPECT_EQ(d.offset(), published.offset());
      got = true;
    }
  }
  EXPECT_TRUE(got) << "the event never arrived: " << stream->Finish().error_message();
  ctx.TryCancel();
  // The password never reaches the log.
  EXPECT_FALSE(absl::StrContains(sidecar.Log(), "app-secret"));
}

TEST_F(SecureKafkaTest, WrongPasswordIsNotServingAndSaysAuthenticationFailed) {
  const std::string address = SidecarSocketAddress();
  SidecarProcess sidecar(Flags(address, "not-the-password"));
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  // Up (it answers health) but NOT_SERVING, saying why in its log.
  auto health = grpc::health::v1::Health::NewStub(channel);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool said = false;
  while (absl::Now() < deadline && !said) {
    said = absl::StrContains(absl::AsciiStrToLower(sidecar.Log()),
                             "kafka authentication failed");
    if (!said) absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(said) << "no line saying authentication failed:\n" << sidecar.Log();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = health->Check(&ctx, {}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(absl::StrContains(sidecar.Log(), "not-the-password"));
}

TEST_F(SecureKafkaTest, TopicItMayNotWriteIsPermissionDeniedNamingTheTopic) {
  const std::string address = SidecarSocketAddress();
  SidecarProcess sidecar(Flags(address));
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30))) << sidecar.Log();
  auto stub = v1::EventBus::NewStub(channel);
  const std::string allowed = UniqueTopic("secure-ok-topic");
  const std::string forbidden = UniqueTopic("secure-no-topic");
  CreateSecureTopic(allowed);
  CreateSecureTopic(forbidden);
  v1::PublishResponse resp;
  ASSERT_TRUE(Publish(stub.get(), allowed, "fine", &resp).ok());
  grpc::Status s = Publish(stub.get(), forbidden, "refused", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), forbidden)) << s.error_message();
  // Other publishes go on.
  EXPECT_TRUE(Publish(stub.get(), allowed, "still fine", &resp).ok());
}

TEST_F(SecureKafkaTest, GroupItMayNotUseIsPermissionDeniedOnSubscribe) {
  const std::string address = SidecarSocketAddress();
  SidecarProcess sidecar(Flags(address));
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30))) << sidecar.Log();
  auto stub = v1::EventBus::NewStub(channel);
  const std::string topic = UniqueTopic("secure-ok-topic");
  CreateSecureTopic(topic);
  const std::string group = UniqueTopic("secure-no-group");

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest req;
  req.mutable_subscription()->set_group(group);
  req.mutable_subscription()->add_topics(topic);
  ASSERT_TRUE(stream->Write(req));
  v1::SubscribeResponse resp;
  while (stream->Read(&resp)) {
  }
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), group)) << s.error_message();
}

// A user that may write no topic at all: Kafka refuses the idempotent
// producer itself (InitProducerId, CLUSTER_AUTHORIZATION_FAILED). Publishes
// fail with PERMISSION_DENIED naming the topic, and the producer is tried
// again with back-off, not several times a second.
TEST_F(SecureKafkaTest, UserWhoMayWriteNothingGetsPermissionDenied) {
  const std::string address = SidecarSocketAddress();
  SidecarProcess sidecar(Flags(address, "nobody-secret", "nobody"));
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitSidecarServing(channel, absl::Seconds(30))) << sidecar.Log();
  auto stub = v1::EventBus::NewStub(channel);
  const std::string topic = UniqueTopic("secure-ok-topic");
  CreateSecureTopic(topic);
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) {
    v1::PublishResponse resp;
    grpc::Status s = Publish(stub.get(), topic, "refused", &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), topic)) << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "needs Write")) << s.error_message();
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << "the refusals waited for a deadline";
  absl::SleepFor(absl::Seconds(6));
  const std::string log = sidecar.Log();
  size_t refusals = 0;
  for (size_t at = log.find("Kafka refused the producer"); at != std::string::npos;
       at = log.find("Kafka refused the producer", at + 1)) {
    ++refusals;
  }
  // With the back-off (1 s, doubling) the attempts grow with the logarithm
  // of the time; without it there would be one or more per second.
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start) + 1;
  const size_t most = 3 + static_cast<size_t>(std::ceil(std::log2(seconds)));
  std::cerr << "producer refusals logged: " << refusals << " in " << seconds
            << " s (at most " << most << " with back-off)\n";
  EXPECT_GE(refusals, 1u);
  EXPECT_LE(refusals, most) << "the producer is re-created too often:\n" << log;
}

}  // namespace
}  // namespace eventbus::testing
