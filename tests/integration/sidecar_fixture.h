#pragma once

// Starts an in-process sidecar (the same Sidecar object main() runs) on a
// loopback port chosen by the kernel, against the real local Kafka.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "eventbus/v1/eventbus.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/config.h"
#include "server/sidecar.h"
#include "tests/integration/kafka_test_env.h"

namespace eventbus::testing {

class SidecarFixture : public ::testing::Test {
 protected:
  void TearDown() override { StopSidecar(); }

  // Starts a sidecar; `tweak` edits the configuration first.
  void StartSidecar(const std::function<void(server::Config&)>& tweak = {}) {
    server::Config config;
    config.brokers = KafkaBrokers();
    config.listen = {"127.0.0.1:0"};
    config.metrics_listen = "127.0.0.1:0";
    config.source = "//eventbus/test";
    config.shutdown_grace = absl::Seconds(5);
    if (tweak) tweak(config);
    auto sidecar = server::Sidecar::Start(config);
    ASSERT_TRUE(sidecar.ok()) << sidecar.status();
    sidecar_ = *std::move(sidecar);
    channel_ = grpc::CreateChannel(sidecar_->addresses().at(0),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::EventBus::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
  }

  void StopSidecar() {
    stub_.reset();
    health_.reset();
    channel_.reset();
    sidecar_.reset();
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& service = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health_->Check(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }

  // Waits until health says SERVING (Kafka answers); fails after 20 s.
  void WaitServing() {
    for (int i = 0; i < 200; ++i) {
      if (Health() == grpc::health::v1::HealthCheckResponse::SERVING) return;
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "the sidecar never reported SERVING";
  }

  std::unique_ptr<server::Sidecar> sidecar_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventBus::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace eventbus::testing
