#include "client/cpp/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace eventbus::client {
namespace {

grpc::ChannelArguments Arguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return args;
}

absl::Status ReadPem(const std::string& what, const std::string& path,
                     std::string* out) {
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read \"", path, "\""));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return absl::OkStatus();
}

}  // namespace

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   Arguments());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(
    const std::string& address, const ChannelOptions& options) {
  if (!options.tls()) return CreateChannel(address);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate and its key go together: give both or neither");
  }
  grpc::SslCredentialsOptions ssl;
  if (absl::Status s = ReadPem("CA certificates", options.tls_ca_file,
                               &ssl.pem_root_certs);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadPem("client certificate", options.tls_cert_file,
                               &ssl.pem_cert_chain);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadPem("client key", options.tls_key_file,
                               &ssl.pem_private_key);
      !s.ok()) {
    return s;
  }
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl),
                                   Arguments());
}

}  // namespace eventbus::client
