// Fuzz target: LoadConfig, with a YAML file (named by --config), flags and
// EVENTBUS_* environment variables, all from the input.
//
// The input is text in three sections, split by lines that are exactly "%%":
//   the YAML file's contents
//   %%
//   flag arguments, one per line (e.g. "--limits.max_event_bytes=10")
//   %%
//   environment entries NAME=VALUE, one per line; the name gets the prefix
//   EVENTBUS_ ("KAFKA_BROKERS=b:9092" is EVENTBUS_KAFKA_BROKERS); empty
//   lines are skipped
// Missing sections are empty; past the first kMaxEntries, further flags and
// environment lines are ignored. "--config=<the file>" always comes last, so
// no input can make LoadConfig read another file.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace eventbus {
namespace {

constexpr size_t kMaxEntries = 16;

// An in-memory file with a path, rewritten for each input.
class ConfigFile {
 public:
  ConfigFile() : fd_(memfd_create("eventbus-fuzz-config", 0)) {
    FUZZ_CHECK(fd_ >= 0);
    path_ = absl::StrCat("/proc/self/fd/", fd_);
  }

  void Write(absl::string_view text) {
    FUZZ_CHECK(ftruncate(fd_, 0) == 0);
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = pwrite(fd_, text.data() + done, text.size() - done,
                               static_cast<off_t>(done));
      FUZZ_CHECK(n > 0);
      done += static_cast<size_t>(n);
    }
  }

  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

struct Sources {
  absl::string_view yaml;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
};

Sources Split(absl::string_view in) {
  Sources s;
  s.yaml = in;
  int section = 0;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t end = in.find('\n', pos);
    if (end == absl::string_view::npos) end = in.size();
    const absl::string_view line = in.substr(pos, end - pos);
    if (line == "%%" && section < 2) {
      if (section == 0) s.yaml = in.substr(0, pos);
      ++section;
    } else if (section == 1 && s.args.size() < kMaxEntries) {
      s.args.emplace_back(line);
    } else if (section == 2 && !line.empty() && s.env.size() < kMaxEntries) {
      const size_t eq = line.find('=');
      const absl::string_view value =
          eq == absl::string_view::npos ? "" : line.substr(eq + 1);
      s.env[absl::StrCat("EVENTBUS_", line.substr(0, eq))] = std::string(value);
    }
    pos = end + 1;
  }
  return s;
}

}  // namespace
}  // namespace eventbus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace eventbus;
  static ConfigFile* const file = new ConfigFile;
  Sources sources =
      Split(absl::string_view(reinterpret_cast<const char*>(data), size));
  file->Write(sources.yaml);
  sources.args.push_back(absl::StrCat("--config=", file->path()));

  const absl::StatusOr<server::Config> config =
      server::LoadConfig(sources.args, sources.env);
  FUZZ_LOG("  %zu flags, %zu variables: %s\n", sources.args.size() - 1,
           sources.env.size(), config.status().ToString().c_str());
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  // What config.h promises of a loaded Config.
  FUZZ_CHECK(!config->brokers.empty());
  FUZZ_CHECK(!config->client_id.empty());
  FUZZ_CHECK(!config->listen.empty());
  FUZZ_CHECK(!config->source.empty());
  FUZZ_CHECK(config->shutdown_grace >= absl::ZeroDuration());
  FUZZ_CHECK(config->publish_timeout > absl::ZeroDuration());
  FUZZ_CHECK(config->publish_timeout < absl::InfiniteDuration());
  FUZZ_CHECK(config->max_event_bytes >= 1 &&
             config->max_event_bytes <= 100000000);
  FUZZ_CHECK(config->stream_max_in_flight >= 1 &&
             config->stream_max_in_flight <= 1000000);
  FUZZ_CHECK(config->max_buffered_bytes >= 1024);
  FUZZ_CHECK(!config->subscribe_dead_letter_suffix.empty());
  return 0;
}
