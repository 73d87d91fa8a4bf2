#include "client/cli/connection.h"

#include "absl/strings/str_cat.h"
#include "client/cpp/channel.h"

namespace eventbus::cli {

void AddConnectionFlags(std::map<std::string, FlagSpec>& specs) {
  for (const char* name : {"address", "tls-ca", "tls-cert", "tls-key"}) {
    specs.insert({name, {true, false}});
  }
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ParsedFlags& flags) {
  client::ChannelOptions options;
  options.tls_ca_file = flags.Get("tls-ca");
  options.tls_cert_file = flags.Get("tls-cert");
  options.tls_key_file = flags.Get("tls-key");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "flags --tls-cert and --tls-key go together: give both or neither");
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      client::CreateChannel(flags.Get("address"), options);
  if (!channel.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS flags: ", channel.status().message()));
  }
  return channel;
}

}  // namespace eventbus::cli
