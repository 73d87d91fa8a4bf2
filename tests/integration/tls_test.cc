// TLS and mTLS on the gRPC listener, against the real local Kafka, with
// certificates the test makes with openssl: clients without a certificate,
// with one of another CA or an expired one are refused; a valid one
// publishes; certificates replaced on disk reach new connections while an
// open Subscribe stream goes on. Unix sockets stay plaintext, with the
// configured file mode.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cpp/channel.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "tests/integration/kafka_test_env.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/tls_certs.h"

namespace eventbus::testing {
namespace {

class TlsTest : public SidecarFixture {
 protected:
  // A sidecar with a plaintext Unix socket (the fixture's own channel, for
  // health) and a TLS listener on a loopback port; returns that port's
  // address.
  std::string StartTls(const std::function<void(server::Config&)>& tweak) {
    socket_ = absl::StrCat(::testing::TempDir(), "eventbus-tls-", getpid(), ".sock");
    StartSidecar([&](server::Config& c) {
      c.listen = {absl::StrCat("unix:", socket_), "127.0.0.1:0"};
      c.tls_cert_file = certs_.Path("server.crt");
      c.tls_key_file = certs_.Path("server.key");
      tweak(c);
    });
    WaitServing();
    return sidecar_->addresses().at(1);
  }

  // Publishes one event through `channel`; the call's status.
  static grpc::Status PublishThrough(const std::shared_ptr<grpc::Channel>& channel,
                                     const std::string& topic,
                                     const std::string& data,
                                     v1::PublishResponse* response = nullptr) {
    v1::PublishRequest req;
    req.set_topic(topic);
    req.mutable_event()->set_type("com.example.tls");
    req.mutable_event()->set_data(data);
    v1::PublishResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return v1::EventBus::NewStub(channel)->Publish(
        &ctx, req, response != nullptr ? response : &resp);
  }

  static std::shared_ptr<grpc::Channel> Tls(const std::string& address,
                                            const std::string& ca,
                                            const std::string& cert = "",
                                            const std::string& key = "") {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::CreateChannel(
        address, {.tls_ca_file = ca, .tls_cert_file = cert, .tls_key_file = key});
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }

  TestCertificates certs_;
  std::string socket_;
};

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutAValidCertificate) {
  ASSERT_TRUE(certs_.MakeCa("ca"));
  ASSERT_TRUE(certs_.MakeCa("other-ca"));
  ASSERT_TRUE(certs_.MakeCert("server", "ca", "eventbus-sidecar"));
  ASSERT_TRUE(certs_.MakeCert("client", "ca", "app"));
  ASSERT_TRUE(certs_.MakeCert("stranger", "other-ca", "app"));
  ASSERT_TRUE(certs_.MakeCert("expired", "ca", "app", /*expired=*/true));
  const std::string address = StartTls([&](server::Config& c) {
    c.tls_client_ca_file = certs_.Path("ca.crt");
  });
  const std::string topic = UniqueTopic("tls");
  CreateTopic(topic, 1);
  const std::string ca = certs_.Path("ca.crt");

  struct Refused {
    const char* who;
    std::shared_ptr<grpc::Channel> channel;
  } refused[] = {
      {"plaintext", client::CreateChannel(address)},
      {"TLS without a client certificate", Tls(address, ca)},
      {"a certificate of another CA",
       Tls(address, ca, certs_.Path("stranger.crt"), certs_.Path("stranger.key"))},
      {"an expired certificate",
       Tls(address, ca, certs_.Path("expired.crt"), certs_.Path("expired.key"))},
  };
  for (const Refused& r : refused) {
    grpc::Status s = PublishThrough(r.channel, topic, r.who);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << r.who << ": " << s.error_code() << " " << s.error_message();
  }

  v1::PublishResponse resp;
  grpc::Status s = PublishThrough(
      Tls(address, ca, certs_.Path("client.crt"), certs_.Path("client.key")), topic,
      "trusted", &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // In Kafka: only the trusted client's event.
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].value, "trusted");
  EXPECT_EQ(records[0].offset, resp.offset());
  // The refusals did not hurt the sidecar.
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);

  // The CLI: --tls-ca with a client certificate publishes; without one it is
  // refused (exit 1); half a certificate is a usage error (exit 2).
  auto cli = [&](const std::string& tls_flags) {
    const std::string command = absl::StrCat(
        EVENTBUS_CLI_BINARY, " publish --address ", address, " --topic ", topic,
        " --type com.example.tls --data cli ", tls_flags, " >/dev/null 2>&1");
    const int rc = std::system(command.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  const std::string cert = absl::StrCat(" --tls-cert ", certs_.Path("client.crt"),
                                        " --tls-key ", certs_.Path("client.key"));
  EXPECT_EQ(cli(absl::StrCat("--tls-ca ", ca, cert)), 0);
  EXPECT_EQ(cli(absl::StrCat("--tls-ca ", ca)), 1);
  EXPECT_EQ(cli(absl::StrCat("--tls-ca ", ca, " --tls-cert ", certs_.Path("client.crt"))),
            2);
  EXPECT_EQ(ReadTopic(topic).size(), 2u) << "the CLI's event is not in Kafka";

  // The Unix socket is plaintext, with the default mode 0660.
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(TlsTest, CertificatesReplacedOnDiskReachNewConnectionsWhileStreamsGoOn) {
  ASSERT_TRUE(certs_.MakeCa("ca-one"));
  ASSERT_TRUE(certs_.MakeCa("ca-two"));
  ASSERT_TRUE(certs_.MakeCert("server", "ca-one", "eventbus-sidecar"));
  ASSERT_TRUE(certs_.MakeCert("rotated", "ca-two", "eventbus-sidecar"));
  const std::string address = StartTls([](server::Config& c) {
    c.tls_reload_interval = absl::Seconds(1);
    c.unix_socket_mode = "0600";
  });
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string topic = UniqueTopic("tls-rotate");
  CreateTopic(topic, 1);
  std::shared_ptr<grpc::Channel> old_channel = Tls(address, certs_.Path("ca-one.crt"));
  ASSERT_TRUE(PublishThrough(old_channel, topic, "before").ok());
  EXPECT_EQ(PublishThrough(Tls(address, certs_.Path("ca-two.crt")), topic, "x")
                .error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client trusting only the second CA connected before the rotation";

  // A Subscribe stream on the first connection.
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = v1::EventBus::NewStub(old_channel)->Subscribe(&ctx);
  v1::SubscribeRequest req;
  req.mutable_subscription()->set_group(UniqueTopic("tls-group"));
  req.mutable_subscription()->add_topics(topic);
  req.mutable_subscription()->set_start_position(v1::START_POSITION_EARLIEST);
  ASSERT_TRUE(stream->Write(req));
  v1::SubscribeResponse resp;
  auto next_data = [&]() -> std::string {
    while (stream->Read(&resp)) {
      if (resp.deliveries_size() > 0) return resp.deliveries(0).event().data();
    }
    return "(stream ended)";
  };
  ASSERT_EQ(next_data(), "before");

  // Rotated in place, as cert-manager does: each file replaced by rename.
  for (const char* ext : {".key", ".crt"}) {
    ASSERT_EQ(std::rename(certs_.Path(absl::StrCat("rotated", ext)).c_str(),
                          certs_.Path(absl::StrCat("server", ext)).c_str()),
              0);
  }
  const absl::Time rotated = absl::Now();
  grpc::Status s;
  while (absl::Now() < rotated + absl::Seconds(15)) {
    s = PublishThrough(Tls(address, certs_.Path("ca-two.crt")), topic, "after");
    if (s.ok()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(s.ok()) << "new connections never got the new certificate: "
                      << s.error_message();
  std::cerr << "TLS: the new certificate served "
            << absl::FormatDuration(absl::Now() - rotated) << " after the rotation\n";
  // A new connection trusting only the old CA is refused now...
  EXPECT_EQ(PublishThrough(Tls(address, certs_.Path("ca-one.crt")), topic, "x")
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // ...while the stream opened before goes on and gets the new event.
  EXPECT_EQ(next_data(), "after");
  ctx.TryCancel();
}

TEST_F(TlsTest, UnusableTlsFilesStopTheStartNamingTheKey) {
  ASSERT_TRUE(certs_.MakeCa("ca"));
  ASSERT_TRUE(certs_.MakeCert("server", "ca", "eventbus-sidecar"));
  ASSERT_TRUE(certs_.MakeCert("other", "ca", "eventbus-sidecar"));
  server::Config config;
  config.brokers = KafkaBrokers();
  config.listen = {"127.0.0.1:0"};
  config.metrics_listen = "";
  config.tls_cert_file = certs_.Path("server.crt");
  config.tls_key_file = certs_.Path("other.key");
  absl::StatusOr<std::unique_ptr<server::Sidecar>> sidecar = server::Sidecar::Start(config);
  ASSERT_FALSE(sidecar.ok());
  EXPECT_EQ(sidecar.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(sidecar.status().message(), "does not belong"))
      << sidecar.status();
  config.tls_key_file = certs_.Path("missing.key");
  sidecar = server::Sidecar::Start(config);
  ASSERT_FALSE(sidecar.ok());
  EXPECT_TRUE(absl::StrContains(sidecar.status().message(), "server.tls.key_file"))
      << sidecar.status();
  config.tls_key_file = certs_.Path("server.key");
  config.tls_client_ca_file = certs_.Path("server.key");
  sidecar = server::Sidecar::Start(config);
  ASSERT_FALSE(sidecar.ok());
  EXPECT_TRUE(absl::StrContains(sidecar.status().message(), "server.tls.client_ca_file"))
      << sidecar.status();
}

}  // namespace
}  // namespace eventbus::testing
