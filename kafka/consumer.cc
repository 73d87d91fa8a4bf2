#include "kafka/consumer.h"

#include <cstring>
#include <new>

namespace eventbus::kafka {

InboundRecord InboundRecord::Make(absl::string_view topic, int32_t partition,
                                  int64_t offset,
                                  std::optional<absl::string_view> key,
                                  std::optional<absl::string_view> value,
                                  absl::Span<const HeaderView> headers,
                                  int64_t timestamp_ms) {
  size_t bytes = topic.size() + (key ? key->size() : 0) +
                 (value ? value->size() : 0);
  for (const HeaderView& h : headers) bytes += h.name.size() + h.value.size();
  // The header list first (new[] aligns the block for it), then the bytes.
  static_assert(alignof(HeaderView) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  const size_t list = headers.size() * sizeof(HeaderView);
  InboundRecord r;
  r.storage_ = std::make_unique_for_overwrite<char[]>(list + bytes);
  auto* const views = reinterpret_cast<HeaderView*>(r.storage_.get());
  char* at = r.storage_.get() + list;
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
  for (size_t i = 0; i < headers.size(); ++i) {
    const absl::string_view name = copy(headers[i].name);
    new (&views[i]) HeaderView{name, copy(headers[i].value)};
  }
  r.headers = absl::Span<const HeaderView>(views, headers.size());
  r.bytes_ = bytes - topic.size();
  r.timestamp_ms = timestamp_ms;
  return r;
}

}  // namespace eventbus::kafka
