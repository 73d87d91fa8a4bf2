#include "server/metrics_http.h"

#include <httplib.h>
#include <pthread.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace eventbus::server {
namespace {

// Requests served at once: scrapes and probes are few and short.
constexpr size_t kHttpThreads = 2;
constexpr char kExpositionContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

MetricsHttpServer::MetricsHttpServer()
    : http_(std::make_unique<httplib::Server>()) {}

MetricsHttpServer::~MetricsHttpServer() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, Handlers handlers) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server.metrics_listen: \"", address,
        "\" is not host:port (for example 0.0.0.0:9464; empty turns it off)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  httplib::Server& http = *server->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  http.Get("/metrics", [metrics = handlers.metrics](const httplib::Request&,
                                                    httplib::Response& res) {
    res.set_content(metrics(), kExpositionContentType);
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [ready = handlers.ready](const httplib::Request&,
                                               httplib::Response& res) {
    const bool serving = ready();
    res.status = serving ? 200 : 503;
    res.set_content(serving ? "SERVING\n" : "NOT_SERVING\n", "text/plain");
  });
  const int bound = port == 0 ? http.bind_to_any_port(host)
                              : (http.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(
        absl::StrCat("server.metrics_listen: cannot listen on ", address,
                     " (address in use or invalid?)"));
  }
  server->address_ = absl::StrCat(address.substr(0, colon + 1), bound);
  server->thread_ = std::thread([&http] {
    pthread_setname_np(pthread_self(), "eb-metrics");
    http.listen_after_bind();
  });
  return server;
}

}  // namespace eventbus::server
