#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace eventbus::server {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::Status ReadFile(const std::string& key, const std::string& path,
                      std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read \"", path, "\""));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return absl::OkStatus();
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

std::unique_ptr<BIO, BioDeleter> Bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioDeleter>(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

}  // namespace

absl::Status CheckTlsFiles(const Config& config) {
  if (config.tls_cert_file.empty()) return absl::OkStatus();
  std::string cert_pem, key_pem;
  if (absl::Status s = ReadFile("server.tls.cert_file", config.tls_cert_file, &cert_pem);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadFile("server.tls.key_file", config.tls_key_file, &key_pem);
      !s.ok()) {
    return s;
  }
  std::unique_ptr<X509, X509Deleter> cert(
      PEM_read_bio_X509(Bio(cert_pem).get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("server.tls.cert_file: \"", config.tls_cert_file,
                     "\" holds no PEM certificate (", OpenSslError(), ")"));
  }
  std::unique_ptr<EVP_PKEY, KeyDeleter> key(
      PEM_read_bio_PrivateKey(Bio(key_pem).get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("server.tls.key_file: \"", config.tls_key_file,
                     "\" holds no unencrypted PEM private key (", OpenSslError(),
                     ")"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "server.tls.key_file: the key in \"", config.tls_key_file,
        "\" does not belong to the certificate in \"", config.tls_cert_file, "\""));
  }
  if (!config.tls_client_ca_file.empty()) {
    std::string ca_pem;
    if (absl::Status s =
            ReadFile("server.tls.client_ca_file", config.tls_client_ca_file, &ca_pem);
        !s.ok()) {
      return s;
    }
    std::unique_ptr<X509, X509Deleter> ca(
        PEM_read_bio_X509(Bio(ca_pem).get(), nullptr, nullptr, nullptr));
    if (ca == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server.tls.client_ca_file: \"", config.tls_client_ca_file,
          "\" holds no PEM certificate (", OpenSslError(), ")"));
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> TlsServerCredentialsFor(
    const Config& config) {
  const auto interval = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(config.tls_reload_interval)));
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          config.tls_key_file, config.tls_cert_file, config.tls_client_ca_file,
          interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (config.tls_client_ca_file.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace eventbus::server
