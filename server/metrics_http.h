#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace eventbus::server {

// The sidecar's plain-HTTP listener for operators (`server.metrics_listen`),
// on threads of its own, never on the event path:
//   GET /metrics  Prometheus text exposition format
//   GET /healthz  200 while the process serves (liveness)
//   GET /readyz   200 when gRPC health is SERVING, else 503 (readiness)
class MetricsHttpServer {
 public:
  struct Handlers {
    // The exposition text.
    std::function<std::string()> metrics;
    // Whether the sidecar is ready (its gRPC health).
    std::function<bool()> ready;
  };

  // Listens on `address` ("host:port", "[v6]:port"; port 0 picks one).
  // UNAVAILABLE when it cannot bind, INVALID_ARGUMENT for a bad address.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, Handlers handlers);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  // Stops listening and waits for the requests in progress.
  ~MetricsHttpServer();

  // The address served, with the port actually bound.
  const std::string& address() const { return address_; }

 private:
  MetricsHttpServer();

  std::unique_ptr<httplib::Server> http_;
  std::string address_;
  std::thread thread_;
};

}  // namespace eventbus::server
