#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "eventbus/v1/eventbus.pb.h"

namespace eventbus::server {

// The one place an internal absl::Status becomes a gRPC status: the code
// maps one to one (both follow google.rpc.Code) and the message is kept.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The same for a per-item result inside a batch or stream.
void ToProtoStatus(const absl::Status& status, v1::Status* out);

}  // namespace eventbus::server
