#include "kafka/consumer.h"

#include <cstring>

namespace eventbus::kafka {

InboundRecord InboundRecord::Make(absl::string_view topic, int32_t partition,
                                  int64_t offset,
                                  std::optional<absl::string_view> key,
                                  std::optional<absl::string_view> value,
                                  absl::Span<const HeaderView> headers,
                                  int64_t timestamp_ms) {
  size_t total = topic.size() + (key ? key->size() : 0) +
                 (value ? value->size() : 0);
  for (const HeaderView& h : headers) total += h.name.size() + h.value.size();
  InboundRecord r;
  r.storage_ = std::make_unique_for_overwrite<char[]>(total);
  char* at = r.storage_.get();
  auto copy = [&at](absl::string_view from) {
    if (!from.empty()) std::memcpy(at, from.data(), from.size());
    absl::string_view to(at, from.size());
    at += from.size();
    return to;
  };
  r.topic = copy(topic);
  r.partition = partition;
  r.offset = offset;
  if (key) r.key = copy(*key);
  if (value) r.value = copy(*value);
  r.headers.reserve(headers.size());
  for (const HeaderView& h : headers) {
    const absl::string_view name = copy(h.name);
    r.headers.push_back({name, copy(h.value)});
  }
  r.timestamp_ms = timestamp_ms;
  r.bytes_ = total - topic.size();
  return r;
}

}  // namespace eventbus::kafka
