#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace eventbus::client {

// TLS settings of a channel; all empty: plaintext.
struct ChannelOptions {
  // PEM CA certificates to verify the sidecar's certificate with; empty
  // with TLS on: the system's CA certificates.
  std::string tls_ca_file;
  // PEM client certificate and its key, for a sidecar that requires client
  // certificates (mTLS).
  std::string tls_cert_file;
  std::string tls_key_file;

  bool tls() const {
    return !tls_ca_file.empty() || !tls_cert_file.empty() || !tls_key_file.empty();
  }
};

// A plaintext channel to the sidecar at `address`: "host:port" or
// "unix:/path/to.sock" (any gRPC target works). The receive size is
// unlimited, so an event as large as the sidecar's `limits.max_event_bytes`
// always arrives.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address);

// The same with `options`: TLS (and a client certificate) when they say so.
// InvalidArgument naming the file when a file cannot be read, or when only
// one of the certificate and its key is given.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(
    const std::string& address, const ChannelOptions& options);

}  // namespace eventbus::client
