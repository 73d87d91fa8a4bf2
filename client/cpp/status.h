#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "eventbus/v1/eventbus.pb.h"

namespace eventbus::client {

// A gRPC status as an absl::Status: the code maps one to one (both follow
// google.rpc.Code) and the message is kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The same for a per-item v1::Status inside a batch, stream or ack error.
absl::Status FromProtoStatus(const v1::Status& status);

}  // namespace eventbus::client
