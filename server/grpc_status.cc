#include "server/grpc_status.h"

#include <string>

namespace eventbus::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

void ToProtoStatus(const absl::Status& status, v1::Status* out) {
  out->set_code(static_cast<int32_t>(status.code()));
  if (status.ok()) {
    out->clear_message();
  } else {
    out->set_message(std::string(status.message()));
  }
}

}  // namespace eventbus::server
