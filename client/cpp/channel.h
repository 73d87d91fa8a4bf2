#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

namespace eventbus::client {

// A plaintext channel to the sidecar at `address`: "host:port" or
// "unix:/path/to.sock" (any gRPC target works). The receive size is
// unlimited, so an event as large as the sidecar's `limits.max_event_bytes`
// always arrives.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address);

}  // namespace eventbus::client
