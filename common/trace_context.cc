#include "common/trace_context.h"

#include <algorithm>

namespace eventbus::common {

absl::string_view TraceIdOf(absl::string_view traceparent) {
  auto hex = [](absl::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
  };
  auto zeros = [](absl::string_view s) {
    return s.find_first_not_of('0') == absl::string_view::npos;
  };
  // version(2) - trace id(32) - parent id(16) - flags(2), then, from a
  // later version only, "-" and more.
  if (traceparent.size() < 55 || traceparent[2] != '-' ||
      traceparent[35] != '-' || traceparent[52] != '-') {
    return "";
  }
  const absl::string_view version = traceparent.substr(0, 2);
  const absl::string_view trace_id = traceparent.substr(3, 32);
  const absl::string_view parent_id = traceparent.substr(36, 16);
  const absl::string_view flags = traceparent.substr(53, 2);
  if (!hex(version) || version == "ff" || !hex(trace_id) || zeros(trace_id) ||
      !hex(parent_id) || zeros(parent_id) || !hex(flags)) {
    return "";
  }
  if (traceparent.size() > 55 && (version == "00" || traceparent[55] != '-')) {
    return "";
  }
  return trace_id;
}

}  // namespace eventbus::common
