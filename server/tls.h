#pragma once

// TLS and mTLS for the gRPC listeners: the files named by server.tls.*,
// checked once at start and then watched, so that certificates rotated in
// place (cert-manager) reach new connections without a restart.

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/status.h"
#include "server/config.h"

namespace eventbus::server {

// Whether the files of server.tls.* are usable: readable PEM, a private key
// that matches the certificate, CA certificates that parse. The error names
// the key and the file.
absl::Status CheckTlsFiles(const Config& config);

// Credentials serving server.tls.cert_file/key_file, requiring and verifying
// client certificates against server.tls.client_ca_file when it is set. The
// files are read again every server.tls.reload_interval.
std::shared_ptr<grpc::ServerCredentials> TlsServerCredentialsFor(
    const Config& config);

}  // namespace eventbus::server
