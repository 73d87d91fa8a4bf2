#pragma once

// The flags every `eventbus` command takes to reach the sidecar: --address
// and, for a TLS listener, --tls-ca, --tls-cert and --tls-key.

#include <grpcpp/channel.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/cli/flags.h"

namespace eventbus::cli {

// Their lines in a command's --help (a macro, so that usage texts can
// include it as a string literal).
#define EVENTBUS_CLI_CONNECTION_FLAGS \
  "  --address ADDR          sidecar address: host:port or unix:/path (required)\n" \
  "  --tls-ca FILE           connect with TLS, verifying the sidecar's certificate\n" \
  "                          with these PEM CA certificates\n" \
  "  --tls-cert FILE         with --tls-key: a PEM client certificate, for a\n" \
  "                          sidecar that requires one (mTLS); implies TLS\n" \
  "  --tls-key FILE          the client certificate's PEM private key\n"

// Adds --address, --tls-ca, --tls-cert and --tls-key to `specs`.
void AddConnectionFlags(std::map<std::string, FlagSpec>& specs);

// The channel the flags describe: TLS when any --tls-* flag is given.
// INVALID_ARGUMENT naming the flag when a file cannot be read or only one
// of --tls-cert and --tls-key is given.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ParsedFlags& flags);

}  // namespace eventbus::cli
