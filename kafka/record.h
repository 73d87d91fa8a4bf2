#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace eventbus::kafka {

struct Header {
  std::string name;
  std::string value;

  friend bool operator==(const Header&, const Header&) = default;
};

// A header someone else's storage holds (an InboundRecord's, librdkafka's).
struct HeaderView {
  absl::string_view name;
  absl::string_view value;
};

// A Kafka record to produce. Plain data: no librdkafka types.
struct Record {
  std::string topic;
  std::optional<std::string> key;  // nullopt: the record has no key
  std::string value;
  std::vector<Header> headers;

  // Bytes of key, value and headers: what counts against the size limit.
  size_t PayloadBytes() const;
};

// The outcome of producing one record.
struct DeliveryResult {
  // OK when Kafka acknowledged the write. UNKNOWN when librdkafka reports the
  // record as possibly persisted. Otherwise the reason it was not written.
  absl::Status status;
  int32_t partition = -1;
  int64_t offset = -1;
};

}  // namespace eventbus::kafka
