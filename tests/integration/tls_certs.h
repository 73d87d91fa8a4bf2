#pragma once

// Certificates for the TLS tests, made with the openssl command line in a
// fresh directory: two CAs, server certificates for localhost/127.0.0.1,
// client certificates (valid, from the other CA, expired).

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace eventbus::testing {

class TestCertificates {
 public:
  TestCertificates() {
    std::string tmpl = absl::StrCat(::testing::TempDir(), "eventbus-tls-XXXXXX");
    dir_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
    EXPECT_FALSE(dir_.empty()) << "mkdtemp failed";
  }
  ~TestCertificates() {
    if (!dir_.empty()) Run(absl::StrCat("rm -rf '", dir_, "'"));
  }

  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  // A self-signed CA: NAME.crt, NAME.key.
  bool MakeCa(const std::string& name) {
    return Run(absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=", name,
        "' -keyout '", Path(name + ".key"), "' -out '", Path(name + ".crt"), "'"));
  }

  // NAME.crt and NAME.key signed by CA, for `cn`, with the SANs localhost
  // and 127.0.0.1. With `expired`, valid only in January 2020.
  bool MakeCert(const std::string& name, const std::string& ca,
                const std::string& cn, bool expired = false) {
    const std::string csr = Path(name + ".csr");
    const std::string ext = Path(name + ".ext");
    std::ofstream(ext) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n";
    if (!Run(absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj '/CN=", cn,
                          "' -keyout '", Path(name + ".key"), "' -out '", csr,
                          "'"))) {
      return false;
    }
    if (!expired) {
      return Run(absl::StrCat("openssl x509 -req -in '", csr, "' -CA '",
                              Path(ca + ".crt"), "' -CAkey '", Path(ca + ".key"),
                              "' -CAcreateserial -days 2 -extfile '", ext,
                              "' -out '", Path(name + ".crt"), "'"));
    }
    // `openssl x509` cannot date a certificate in the past; `openssl ca` can.
    const std::string db = Path(name + "-db");
    Run(absl::StrCat("mkdir -p '", db, "'"));
    std::ofstream(db + "/index.txt").flush();
    std::ofstream(db + "/serial") << "01\n";
    std::ofstream(Path(name + ".cnf"))
        << "[ca]\ndefault_ca = test\n[test]\ndatabase = " << db
        << "/index.txt\nnew_certs_dir = " << db << "\nserial = " << db
        << "/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = none\n"
        << "[any]\ncommonName = supplied\n";
    return Run(absl::StrCat(
        "openssl ca -batch -notext -config '", Path(name + ".cnf"), "' -cert '",
        Path(ca + ".crt"), "' -keyfile '", Path(ca + ".key"),
        "' -startdate 20200101000000Z -enddate 20200102000000Z -extfile '", ext,
        "' -in '", csr, "' -out '", Path(name + ".crt"), "'"));
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  static bool Run(const std::string& command) {
    const int rc = std::system(absl::StrCat(command, " >/dev/null 2>&1").c_str());
    EXPECT_EQ(rc, 0) << command;
    return rc == 0;
  }

  std::string dir_;
};

}  // namespace eventbus::testing
